"""Refresh service/api/openapi_examples.json from a real run of the service.

    PYTHONPATH=. python scripts/capture_openapi_examples.py [--check]

Runs tests/openapi_kit.py's flow (an in-process service on SQLite, every lab and auditor
call signed, the file's request bodies sent as written) and updates every answer example
the run reached from what the service really answered, keeping the example world's ids,
hashes, codes and times (`tests.openapi_kit.refresh`). Entries the run cannot reach
without a chain, a sealed-PDF upload to verify or a signed QR (anchored proof, public
report, verify, healthz, trust list, QR check) are kept as captured by an earlier full
run; they are listed. `--check` writes nothing and exits 1 if the file is not current
(tests/test_openapi_examples.py does the same).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from service.api.openapi import EXAMPLES_FILE
from tests.openapi_kit import capture, refreshed


def main(argv: list[str]) -> int:
    stored = json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        run = capture(Path(tmp))
    new, missed = refreshed(stored, run)
    changed = sorted(k for k in new["responses"] if new["responses"][k] != stored["responses"][k])
    for key in changed:
        print("refreshed:", key)
    for key in missed:
        print("kept (not reached by this run):", key)
    if "--check" in argv:
        return 1 if changed else 0
    EXAMPLES_FILE.write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {EXAMPLES_FILE} ({len(changed)} refreshed, {len(missed)} kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
