"""Database faults are answered, not crashed (issue 11, finding 7).

While PostgreSQL refuses connections (every backend of the test database killed and new
ones not allowed, as during a restart), writes, lab reads and the public page answer 503
`database_unavailable` with Retry-After, never 500; once it is back, the pinged pool
reconnects and the same calls succeed. On SQLite, writers begin IMMEDIATE, so two writers
racing never fail with "database is locked" (the busy timeout applies)."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from service.domain.codes import generate_code
from service.state import build_state
from tests.fixtures.db import PG_ADMIN_URL, make_settings
from tests.labkit import add_lab, client_for, make_app

NEVER_ISSUED = generate_code("440300", 26).canonical
PROJECT = {
    "name": "深圳湾科技园3号楼",
    "location": "深圳市南山区科苑南路",
    "construction_unit": {"name": "深圳湾建设有限公司"},
}


def _set_connections(db: str, allowed: bool) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            )


@pytest.mark.postgres
def test_postgresql_away_answers_503_then_recovers(tmp_path: Path, pg_url: str) -> None:
    db = pg_url.rsplit("/", 1)[1]
    state = build_state(make_settings(tmp_path, pg_url), chain=None)
    lab = add_lab(state, 91)
    client = client_for(make_app(state), lab)
    try:
        assert client.post("/api/v1/projects", json_body=PROJECT).status_code == 201
        _set_connections(db, allowed=False)
        try:
            for call in (
                lambda: client.post("/api/v1/projects", json_body=PROJECT),
                lambda: client.get("/api/v1/flags"),
                lambda: client.get(f"/api/v1/public/reports/{NEVER_ISSUED}"),
                lambda: client.get("/healthz"),
            ):
                r = call()
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "database_unavailable"
                assert r.headers["Retry-After"] == "2"
        finally:
            _set_connections(db, allowed=True)
        assert client.post("/api/v1/projects", json_body=PROJECT).status_code == 201
        assert client.get("/api/v1/flags").status_code == 200
    finally:
        state.close()


def test_sqlite_writers_do_not_fail_on_the_write_lock(tmp_path: Path) -> None:
    state = build_state(make_settings(tmp_path, f"sqlite:///{tmp_path / 'w.db'}"), chain=None)
    lab = add_lab(state, 92)
    app = make_app(state)
    statuses: list[int] = []
    start = threading.Barrier(6)

    def write() -> None:
        with client_for(app, lab) as c:
            start.wait()
            for _ in range(5):
                statuses.append(c.post("/api/v1/projects", json_body=PROJECT).status_code)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    state.close()
    assert statuses == [201] * 30
