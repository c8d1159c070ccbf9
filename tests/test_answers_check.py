"""The end-of-run answers check of tests/fixtures/statuses.py, end to end: a pytest run of
its own, split over two xdist workers (one answer each), fails (exit status 1) when one
worker saw an answer the OpenAPI document does not list and names only that one in the
summary. So the check holds for `make test`, which runs in parallel; every suite run shows
the passing case in its last lines ("answers: all N ... are in /openapi.json").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TEST_FILE = '''
from tests.fixtures.statuses import RECORDED

def test_records():
    RECORDED.add({row!r})
'''


Row = tuple[str, str, int, str | None]


def _run(tmp: Path, rows: list[Row]) -> subprocess.CompletedProcess[str]:
    tmp.mkdir()
    (tmp / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    for i, row in enumerate(rows):
        (tmp / f"test_part{i}.py").write_text(TEST_FILE.format(row=row), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.fixtures.statuses",
         "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile", "-c",
         str(tmp / "pytest.ini"), "--rootdir", str(tmp), str(tmp)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_an_answer_one_worker_saw_fails_the_whole_run(tmp_path: Path) -> None:
    out = _run(tmp_path / "gap", [("GET", "/api/v1/public/reports/{code}", 404,
                                   "unknown_code"),
                                  ("GET", "/healthz", 418, "teapot")])
    assert "2 passed" in out.stdout, out.stdout + out.stderr
    assert out.returncode == 1, out.stdout + out.stderr
    assert "answers missing from /openapi.json" in out.stdout
    assert "GET /healthz: 418 teapot" in out.stdout

    # the answers both workers saw were merged: the documented one is counted, not listed
    assert "1 answer(s) given in the run are not documented" in out.stdout
    assert "/api/v1/public/reports/{code}" not in out.stdout.split("missing from")[1]
