"""The bare-app ceilings the HTTP benches measure themselves against (issue 17).

A bare FastAPI app served exactly as `jianzheng api` serves ours (service/runtime.py
`_api_process`): uvicorn with httptools and uvloop, no access log, backlog 2048, one
process per `--workers` on its own SO_REUSEPORT socket, the start-up heap frozen
(`gc.freeze`). It answers, on the paths the
benches already load, so that the very same load client (wrk with the same script, the
same requests) drives both:

- `POST /api/v1/report-codes`: one autocommit PostgreSQL INSERT of the body's
  `report_no` into `ceiling_codes` (bigserial key, unique report number), awaited on the
  event loop through a pool of `JZ_DATABASE__POOL_SIZE` connections (the same small FIFO
  pool of psycopg async connections our fast path uses, service.storage.db.AsyncPgPool;
  psycopg_pool is not installed), then a small JSON 201. No signature check, no body
  validation beyond `json.loads`: the floor any issuance route built on this stack pays.
- `GET /api/v1/public/reports/{code}`: a constant JSON body (the bytes of the file named
  by `JZ_CEILING_BODY`, which the public bench fills with our own answer for the report,
  so both send the same number of bytes).
- `GET /healthz`: 200.

Run by the benches as `python bench/ceiling.py --serve PORT` (one process each); its
database is `JZ_DATABASE__URL` (the bench's fresh database; `ensure_table` creates the
table first).
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS ceiling_codes ("
    " id bigserial PRIMARY KEY, report_no text NOT NULL UNIQUE,"
    " created_at timestamptz NOT NULL DEFAULT now())"
)
INSERT_SQL = "INSERT INTO ceiling_codes (report_no) VALUES (%(r)s) RETURNING id"


def ensure_table(url: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(TABLE_SQL)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def make_app() -> Any:
    url = os.environ.get("JZ_DATABASE__URL", "")
    pool_size = int(os.environ.get("JZ_DATABASE__POOL_SIZE", "4"))
    body_file = os.environ.get("JZ_CEILING_BODY", "")
    constant = Path(body_file).read_bytes() if body_file else b'{"status":"genuine"}'
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if url.startswith("postgresql"):
            from service.storage.db import AsyncPgPool

            state["pool"] = AsyncPgPool(_libpq(url), pool_size)
        try:
            yield
        finally:
            if "pool" in state:
                await state["pool"].close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    @app.post("/api/v1/report-codes")
    async def insert(request: Request) -> Response:
        body = json.loads(await request.body())
        row = await state["pool"].fetchone(INSERT_SQL, {"r": body["report_no"]})
        out = json.dumps({"id": row[0] if row else None, "report_no": body["report_no"]})
        return Response(out.encode(), status_code=201, media_type="application/json")

    @app.get("/api/v1/public/reports/{code}")
    async def public(code: str) -> Response:
        return Response(constant, media_type="application/json")

    return app


def serve(port: int) -> None:
    """One ceiling process on its own SO_REUSEPORT socket, configured like ours."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    app = make_app()
    gc.collect()
    gc.freeze()  # as service.runtime.freeze_startup_heap does for ours
    config = uvicorn.Config(
        app, http="httptools", loop="uvloop", access_log=False,
        log_level="warning", backlog=2048,
    )
    uvicorn.Server(config).run(sockets=[sock])


def start(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`workers` ceiling processes in one new process group (the group leader is a
    shell-less launcher: this file with --group), so a bench can count their CPU as it
    counts ours and stop them with one killpg."""
    return subprocess.Popen(
        [sys.executable, __file__, "--group", str(port), str(workers)],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )


def _group(port: int, workers: int) -> None:
    import signal
    import time

    procs = [
        subprocess.Popen([sys.executable, __file__, "--serve", str(port)]) for _ in range(workers)
    ]
    stop = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        p.wait(20)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--group":
        _group(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
