"""Idle resumable uploads expire: bytes deleted, 410 `upload_expired` afterwards; completed
uploads and busy ones stay; leftovers of crashed requests are cleaned (SQLite and
PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.api.problems import status_of
from service.client import JianzhengClient
from service.clock import utc_now
from service.domain import uploads
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from service.storage.models import Upload
from tests.fixtures.clock import ShiftedClock
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import OCTETS, patch_upload, start_upload

DAY = timedelta(hours=72)


def _age(state: ServiceState, upload_id: str, by: timedelta) -> None:
    """Pretend the upload last moved `by` ago."""
    with session_scope(state.sessions) as s:
        s.execute(
            update(Upload).where(Upload.id == upload_id).values(updated_at=utc_now() - by)
        )


def _old_file(path: Path, age_s: float) -> Path:
    path.write_bytes(b"leftover")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _problem(resp: object) -> tuple[int, str | None]:
    status = resp.status_code  # type: ignore[attr-defined]
    if resp.request.method == "HEAD":  # type: ignore[attr-defined]
        return status, None
    return status, resp.json()["code"]  # type: ignore[attr-defined]


def _status(c: JianzhengClient, upload_id: str) -> str:
    status: str = c.get(f"/api/v1/uploads/{upload_id}").json()["status"]
    return status


def test_idle_upload_expires_and_answers_410(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 41)
    data_dir = app_state.settings.data_dir
    data = os.urandom(4096)
    with client_for(app, lab) as c:
        idle = start_upload(c, len(data))
        assert patch_upload(c, idle, 0, data[:1000]).status_code == 204
        busy = start_upload(c, len(data))
        assert patch_upload(c, busy, 0, data[:1000]).status_code == 204
        done = start_upload(c, len(data))
        assert patch_upload(c, done, 0, data).status_code == 204
        resp = c.post(
            f"/api/v1/uploads/{done}/complete",
            json_body={"sha256": hashlib.sha256(data).hexdigest()},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["expires_at"] is None

        status = c.get(f"/api/v1/uploads/{busy}").json()
        assert status["status"] == "open" and status["expires_at"].endswith("Z")

        for uid in (idle, done):
            _age(app_state, uid, DAY + timedelta(minutes=1))
        _age(app_state, busy, DAY - timedelta(minutes=5))
        orphan_chunk = _old_file(uploads.upload_dir(data_dir) / f"{busy}.dead.chunk", 4 * 86400)
        young_chunk = _old_file(uploads.upload_dir(data_dir) / f"{busy}.live.chunk", 10)
        ghost_part = _old_file(uploads.part_path(data_dir, "01GHOSTNEVERCOMMITTED0000"), 4 * 86400)
        assert uploads.part_path(data_dir, idle).exists()

        result = uploads.sweep_expired(app_state.sessions, data_dir, DAY)

        assert result.expired == [idle]
        assert result.files_removed == 3  # idle's part, the orphan chunk, the ghost part
        assert not uploads.part_path(data_dir, idle).exists()
        assert uploads.part_path(data_dir, busy).exists()
        assert not orphan_chunk.exists() and not ghost_part.exists() and young_chunk.exists()

        # every call on the expired upload says so; nothing else changed
        assert _problem(patch_upload(c, idle, 1000, data[1000:])) == (410, "upload_expired")
        assert _problem(c.request("HEAD", f"/api/v1/uploads/{idle}")) == (410, None)
        sha = hashlib.sha256(data).hexdigest()
        resp = c.post(f"/api/v1/uploads/{idle}/complete", json_body={"sha256": sha})
        assert _problem(resp) == (410, "upload_expired")
        status = c.get(f"/api/v1/uploads/{idle}").json()
        assert status["status"] == "expired" and status["expires_at"] is None
        assert resp.headers["content-type"] == "application/problem+json"

        # the busy upload goes on and the completed one is still usable
        assert patch_upload(c, busy, 1000, data[1000:]).status_code == 204
        assert c.get(f"/api/v1/uploads/{done}").json()["status"] == "complete"

        # a second pass finds nothing more
        again = uploads.sweep_expired(app_state.sessions, data_dir, DAY)
        assert again.expired == [] and again.files_removed == 0


def test_expired_upload_cannot_become_a_record(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 42)
    data = os.urandom(2048)
    with client_for(app, lab) as c:
        uid = start_upload(c, len(data))
        _age(app_state, uid, DAY * 2)
        uploads.sweep_expired(app_state.sessions, app_state.settings.data_dir, DAY)
        assert lab.institution
        with session_scope(app_state.sessions) as s, pytest.raises(Exception) as exc:
            uploads.take_upload(s, app_state.blobs, uid, lab.institution)
        assert status_of(exc.value) == 410
        assert getattr(exc.value, "code", None) == "upload_expired"


def test_each_api_process_sweeps_on_its_own(tmp_path: Path, db_url: str) -> None:
    """The app's lifespan runs the sweeper: once the service's clock passes the idle
    limit (moved forward, not waited for), the idle upload expires."""
    settings = make_settings(
        tmp_path, db_url, uploads={"expire_after_h": 1, "sweep_interval_s": 0.2}
    )
    clock = ShiftedClock()
    state = build_state(settings, chain=None, clock=clock)
    try:
        lab = add_lab(state, 43)
        app = make_app(state)
        with TestClient(app, base_url="http://testserver") as http:  # runs the lifespan
            c = JianzhengClient(
                "http://testserver", lab.key_id, lab.secret, http=http, clock=clock.time
            )
            uid = start_upload(c, 100)
            assert _status(c, uid) == "open"
            clock.advance(3600 + 5)  # past the idle limit
            deadline = time.monotonic() + 15
            while _status(c, uid) != "expired":  # polls the sweeper thread, waits no deadline
                if time.monotonic() > deadline:
                    pytest.fail("the sweeper did not expire the upload within 15 s")
                time.sleep(0.05)
            resp = c.request(
                "PATCH", f"/api/v1/uploads/{uid}", content=b"x" * 100, content_type=OCTETS,
                headers={"Upload-Offset": "0"},
            )
            assert resp.status_code == 410 and resp.json()["code"] == "upload_expired"
            assert not uploads.part_path(settings.data_dir, uid).exists()
    finally:
        state.engine.dispose()
