"""Durability (issue 11, finding 6): a renamed or created file's directory is fsynced; SQLite
commits with synchronous=FULL; a crash between moving a completed upload into the blob
store and committing leaves a completion that a retry finishes; stored files that no
committed record names are swept after a grace period."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from service.domain import uploads
from service.domain.orphans import sweep_orphans
from service.state import ServiceState, build_state
from service.storage import blobs as blobs_module
from service.storage.blobs import BlobStore
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import multipart


def test_a_new_blob_and_its_new_directories_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = blobs_module.fsync_dir
    monkeypatch.setattr(blobs_module, "fsync_dir", lambda p: (synced.append(p), real(p)))
    store = BlobStore(tmp_path / "blobs")
    sha = store.put(b"evidence")
    leaf_dir = store.path(sha).parent
    assert leaf_dir in synced  # the rename into place
    assert leaf_dir.parent in synced and store.root in synced  # the directories made for it
    synced.clear()
    store.put(b"evidence")  # already stored: nothing renamed
    assert synced == []


def test_sqlite_commits_are_fully_synchronous(tmp_path: Path) -> None:
    state = build_state(make_settings(tmp_path, f"sqlite:///{tmp_path / 's.db'}"), chain=None)
    try:
        with state.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        state.close()


def _uploaded(client: object, data: bytes) -> str:
    from service.client import JianzhengClient

    assert isinstance(client, JianzhengClient)
    r = client.post("/api/v1/uploads", json_body={"length": len(data), "media_type": "video/mp4"})
    uid: str = r.json()["upload_id"]
    r = client.request(
        "PATCH", f"/api/v1/uploads/{uid}", content=data,
        headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert r.status_code == 204, r.text
    return uid


def test_a_crash_after_the_move_before_the_commit_leaves_a_finishable_upload(
    app_state: ServiceState,
) -> None:
    lab = add_lab(app_state, 95)
    assert lab.institution
    data = os.urandom(70_000)
    digest = hashlib.sha256(data).hexdigest()
    with client_for(make_app(app_state), lab) as client:
        uid = _uploaded(client, data)
        # The completion's work up to the commit, then the process "dies": no commit.
        session = app_state.sessions()
        upload = uploads.get_upload(session, uid, lab.institution)
        uploads.complete_upload(session, app_state.settings.data_dir, app_state.blobs, upload,
                                digest)
        session.rollback()
        session.close()
        assert not uploads.part_path(app_state.settings.data_dir, uid).exists()
        assert app_state.blobs.exists(digest)
        # The lab retries the completion with the same hash: it finishes.
        r = client.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": digest})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "complete"
        media = client.post("/api/v1/media", json_body={"kind": "video", "upload_id": uid})
        assert media.status_code == 201, media.text


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_orphan_blobs_are_swept_after_the_grace_period(app_state: ServiceState) -> None:
    lab = add_lab(app_state, 96)
    store = app_state.blobs
    named_data = b"%PDF-1.4 a document a media record names"
    with client_for(make_app(app_state), lab) as client:
        body, ctype = multipart({"kind": "document", "description": "合同扫描件"},
                                named_data, "application/pdf")
        named = client.post("/api/v1/media", content=body, content_type=ctype)
        assert named.status_code == 201, named.text
        pending_data = os.urandom(1000)
        pending_uid = _uploaded(client, pending_data)
        pending_sha = hashlib.sha256(pending_data).hexdigest()
        r = client.post(f"/api/v1/uploads/{pending_uid}/complete",
                        json_body={"sha256": pending_sha})
        assert r.status_code == 200
    orphan_old = store.put(b"a signed PDF whose record never committed")
    orphan_new = store.put(b"a file whose record is being written right now")
    stale_tmp = store.root / "tmp" / "tmpcrashed"
    stale_tmp.write_bytes(b"half")
    named_sha = hashlib.sha256(named_data).hexdigest()
    for sha in (orphan_old, named_sha, pending_sha):
        _age(store.path(sha), 2 * 86400)
    _age(stale_tmp, 2 * 86400)
    swept = sweep_orphans(app_state.read_sessions, store, grace_s=86400)
    assert swept.blobs_removed == [orphan_old]
    assert swept.temporaries_removed == 1
    assert not store.exists(orphan_old)
    assert store.exists(orphan_new) and store.exists(pending_sha)
    assert store.exists(named_sha)
