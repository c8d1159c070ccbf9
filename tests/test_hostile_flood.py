"""The hostile-file corpus (tests/hostile_kit.py: huge MediaBox, many pages, flate bomb,
deep nesting, broken xref, encrypted PDF; pixel-bomb PNG, truncated JPEG, TIFF with bad
tags, EPS) sent to a real `jianzheng api` process on 127.0.0.1, to the public verify
route and to the lab PDF route: every answer is 200 or 4xx within 5 s, the API process
stays under 1 GB resident, and `/healthz` answers all through the flood.

The figures (requests sent, 5xx count, answer times, peak RSS of the API process and of
the whole process tree with its sandbox children) are printed and written to
`test-artifacts/hostile-flood.json`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from service.anchoring.devchain import free_port
from service.client import JianzhengClient
from service.state import build_state
from tests import hostile_kit
from tests.anchoring_support import (
    REPO_ROOT,
    api_children,
    healthz_of,
    serve_env,
    start_jianzheng,
    stop_jianzheng,
    wait_for,
)
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import APPROVER_NAME, build_chain

ROUNDS = 3
#: Every answer within this on a machine with a core per runnable process; on a machine
#: loaded beyond that (the shared development box runs ~7 test suites on 2 cores) the
#: bound grows with the load average per core, and the figures say so.
MAX_ANSWER_S = 5.0
MAX_RSS_MB = 1024
ARTIFACTS = REPO_ROOT / "test-artifacts"

pytestmark = pytest.mark.timeout(900)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _open_codes(tmp_path: Path, db_url: str, count: int) -> tuple[dict[str, str], list[str]]:
    """A lab with `count` open report codes that have their metadata (ready for a PDF)."""
    state = build_state(make_settings(tmp_path, db_url), chain=None)
    try:
        lab = add_lab(state, 31)
        assert lab.institution is not None
        client = client_for(make_app(state), lab)
        ids = build_chain(state, lab.institution, "HF")
        codes = []
        for i in range(count):
            r = client.issue_code(f"BG-2026-HF{i}", ids["project"])
            assert r.status_code == 201, r.text
            code = r.json()["code"]
            r = client.put(f"/api/v1/reports/{code}", json_body={
                "conclusion": "pass", "issued_on": "2026-11-22", "approver": APPROVER_NAME,
                "parents": [ids["sample"], ids["test_record"]],
            })
            assert r.status_code in (200, 201), r.text
            codes.append(code)
        return {"key_id": lab.key_id, "secret": lab.secret}, codes
    finally:
        state.close()


def test_the_hostile_corpus_never_gets_a_5xx_nor_takes_the_server_down(tmp_path: Path) -> None:
    corpus = {name: (build(), media_type)
              for name, (build, media_type) in hostile_kit.CORPUS.items()}
    pdfs = [name for name in corpus if name.endswith(".pdf")]
    db_url = f"sqlite:///{tmp_path / 'var' / 'jianzheng.db'}"
    lab, codes = _open_codes(tmp_path, db_url, len(pdfs) * ROUNDS)

    env = serve_env(tmp_path / "var")
    # rate limit off: every file must reach the checks; the sandbox's time cap a little
    # under the default, as headroom for a loaded 2-core machine
    env.update({"JZ_DATABASE__URL": db_url, "JZ_PUBLIC__RATE_LIMIT_PER_MINUTE": "0",
                "JZ_PUBLIC__VERIFY_TIMEOUT_S": "2.5"})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    proc = start_jianzheng(env, log, "api", "--port", str(port), "--workers", "1")
    answers: list[dict[str, object]] = []
    health: list[tuple[int, float]] = []
    peak = {"api": 0.0, "tree": 0.0}
    done = threading.Event()
    try:
        wait_for(lambda: healthz_of(port) is not None, 90, "the API to answer")
        wait_for(lambda: "verify sandbox ready" in log.read_text(), 90,
                 "the verify sandbox to start")
        api_pids = api_children(proc.pid)
        assert len(api_pids) == 1

        def sample() -> None:
            while not done.is_set():
                peak["api"] = max(peak["api"], _rss_mb(api_pids[0]))
                peak["tree"] = max(peak["tree"], sum(_rss_mb(p) for p in _tree(api_pids[0])))
                time.sleep(0.05)

        def healthz() -> None:
            with httpx.Client(base_url=base, timeout=10) as http:
                while not done.is_set():
                    start = time.monotonic()
                    try:
                        status = http.get("/healthz").status_code
                    except httpx.HTTPError:
                        status = 0
                    health.append((status, time.monotonic() - start))
                    time.sleep(0.2)

        def send(route: str, name: str, call: object) -> None:
            start = time.monotonic()
            try:
                r = call()  # type: ignore[operator]
                status, body = r.status_code, r.text[:300]
            except httpx.HTTPError as exc:
                status, body = 0, repr(exc)
            answers.append({"route": route, "file": name, "status": status,
                            "seconds": round(time.monotonic() - start, 3), "body": body})

        def verify(name: str) -> None:
            data, media_type = corpus[name]
            with httpx.Client(base_url=base, timeout=30) as http:
                send("public verify", name, lambda: http.post(
                    "/api/v1/public/verify", files={"file": (name, data, media_type)}))

        def seal(name: str, code: str) -> None:
            with JianzhengClient(base, lab["key_id"], lab["secret"], timeout=30) as client:
                send("lab pdf", name, lambda: client.put(
                    f"/api/v1/reports/{code}/pdf", content=corpus[name][0],
                    content_type="application/pdf"))

        watchers = [threading.Thread(target=sample), threading.Thread(target=healthz)]
        for t in watchers:
            t.start()
        # two verifies at a time (the sandbox's slots per process), one lab upload beside
        with ThreadPoolExecutor(2) as verifiers, ThreadPoolExecutor(1) as sealers:
            jobs = [verifiers.submit(verify, name) for _ in range(ROUNDS) for name in corpus]
            jobs += [sealers.submit(seal, name, codes.pop()) for _ in range(ROUNDS)
                     for name in pdfs]
            for job in jobs:
                job.result()
        done.set()
        for t in watchers:
            t.join(15)
        alive = healthz_of(port) is not None
    finally:
        done.set()
        assert stop_jianzheng(proc) == 0, log.read_text()[-3000:]

    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    bound = MAX_ANSWER_S * max(1.0, load)
    figures = {
        "requests": len(answers),
        "load_per_core": round(load, 2),
        "answer_bound_s": round(bound, 2),
        "by_route": {route: sum(1 for a in answers if a["route"] == route)
                     for route in ("public verify", "lab pdf")},
        "statuses": sorted({int(str(a["status"])) for a in answers}),
        "5xx": sum(1 for a in answers if int(str(a["status"])) >= 500),
        "max_answer_s": max(float(str(a["seconds"])) for a in answers),
        "healthz_polls": len(health),
        "healthz_failures": sum(1 for status, _ in health if status != 200),
        "healthz_max_s": round(max(s for _, s in health), 3),
        "max_rss_api_mb": round(peak["api"], 1),
        "max_rss_tree_mb": round(peak["tree"], 1),
        "answers": answers,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "hostile-flood.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps({k: v for k, v in figures.items() if k != "answers"}))  # noqa: T201

    bad = [a for a in answers if not (a["status"] == 200 or 400 <= int(str(a["status"])) < 500)]
    assert bad == [], bad
    slow = [a for a in answers if float(str(a["seconds"])) >= bound]
    assert slow == [], slow
    assert figures["healthz_failures"] == 0 and len(health) > 10, health
    assert peak["api"] < MAX_RSS_MB, figures
    assert alive
