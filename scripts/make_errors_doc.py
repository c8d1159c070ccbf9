"""Writes docs/errors.md from service/api/answers.py (the codes each route can answer).

    .venv/bin/python scripts/make_errors_doc.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.api.answers import errors_markdown  # noqa: E402

if __name__ == "__main__":
    (ROOT / "docs" / "errors.md").write_text(errors_markdown(), encoding="utf-8")
    print("wrote docs/errors.md")
