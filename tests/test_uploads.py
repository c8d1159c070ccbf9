"""Resumable uploads (INTERFACE §5.2, R16): offsets, completion by SHA-256, isolation, and a
200 MB file through a real server with a connection dropped mid-chunk."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.client import JianzhengClient, new_nonce, sign_request
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Record, Upload
from tests.labkit import Account, add_lab, client_for, make_app
from tests.recordkit import (
    OCTETS,
    TINY_PDF,
    contract_meta,
    created,
    patch_upload,
    project_body,
    start_upload,
    today_cst,
)


def _offset(client: JianzhengClient, upload_id: str) -> int:
    resp = client.request("HEAD", f"/api/v1/uploads/{upload_id}")
    assert resp.status_code == 200
    return int(resp.headers["upload-offset"])


def _records(state: ServiceState) -> int:
    with session_scope(state.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(Record)) or 0)


def test_upload_offsets_completion_and_use(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab_a, lab_b = add_lab(app_state, 31), add_lab(app_state, 32)
    data = bytes(range(256)) * 1000  # 256,000 bytes
    digest = hashlib.sha256(data).hexdigest()
    with client_for(app, lab_a) as a, client_for(app, lab_b) as b:
        uid = start_upload(a, len(data))
        assert _offset(a, uid) == 0
        r = patch_upload(a, uid, 0, data[:100_000])
        assert r.status_code == 204 and r.headers["upload-offset"] == "100000"
        # a stale offset is refused and answers the current one
        r = patch_upload(a, uid, 0, data[:100_000])
        assert r.status_code == 409 and r.json()["code"] == "upload_offset_mismatch"
        assert r.headers["upload-offset"] == "100000"
        # more than the declared length
        r = patch_upload(a, uid, 100_000, data[100_000:] + b"extra")
        assert r.status_code == 422 and r.json()["code"] == "upload_length_exceeded"
        # a chunk whose signature does not match its bytes does not count
        headers = sign_request(
            "PATCH", f"/api/v1/uploads/{uid}", None, b"other bytes", lab_a.key_id,
            lab_a.secret, int(time.time()), new_nonce(),
        )
        r = a.http.request(
            "PATCH", f"/api/v1/uploads/{uid}", content=data[100_000:200_000],
            headers={**headers, "Upload-Offset": "100000", "Content-Type": OCTETS},
        )
        assert r.status_code == 401 and r.json()["code"] == "auth_bad_signature"
        assert _offset(a, uid) == 100_000
        # another institution may not touch it
        assert b.request("HEAD", f"/api/v1/uploads/{uid}").status_code == 403
        assert b.get(f"/api/v1/uploads/{uid}").status_code == 403
        r = patch_upload(b, uid, 100_000, data[100_000:])
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert b.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": digest}).json()[
            "code"
        ] == "forbidden"
        # completing early
        r = a.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": digest})
        assert r.status_code == 409 and r.json()["code"] == "upload_incomplete"
        assert patch_upload(a, uid, 100_000, data[100_000:]).status_code == 204
        # using it before completion
        r = a.post("/api/v1/media", json_body={"kind": "video", "upload_id": uid})
        assert r.status_code == 409 and r.json()["code"] == "upload_not_complete"
        before = _records(app_state)
        r = a.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": "0" * 64})
        assert r.status_code == 422 and r.json()["code"] == "upload_hash_mismatch"
        assert not app_state.blobs.exists(digest) and _records(app_state) == before
        r = a.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": digest.upper()})
        assert r.status_code == 200 and r.json()["status"] == "complete"
        assert app_state.blobs.get(digest) == data
        r = b.post("/api/v1/media", json_body={"kind": "video", "upload_id": uid})
        assert r.status_code == 403
        media = created(a.post("/api/v1/media", json_body={"kind": "video", "upload_id": uid}))
        rec = a.get(f"/api/v1/records/{media}").json()["record"]
        assert rec["files"] == [
            {"role": "media", "sha256": digest, "size": len(data), "media_type": "video/mp4"}
        ]
        r = a.post("/api/v1/media", json_body={"kind": "video", "upload_id": uid})
        assert r.status_code == 409 and r.json()["code"] == "upload_already_used"
        assert a.get(f"/api/v1/uploads/{uid}").json()["record_id"] == media
        # a contract PDF may come through an upload too
        pid = created(a.post("/api/v1/projects", json_body=project_body()))
        uid2 = start_upload(a, len(TINY_PDF), "application/pdf")
        assert patch_upload(a, uid2, 0, TINY_PDF).status_code == 204
        sha_pdf = hashlib.sha256(TINY_PDF).hexdigest()
        assert a.post(f"/api/v1/uploads/{uid2}/complete", json_body={"sha256": sha_pdf})
        meta = {**contract_meta(pid, today_cst()), "upload_id": uid2}
        assert a.post("/api/v1/contracts", json_body=meta).status_code == 201


# --------------------------------------------------------------------------- 200 MB


CHUNK = 8 * 1024 * 1024
TOTAL = 200 * 1024 * 1024  # 25 chunks
DROP_AT = 12  # the chunk whose connection is cut halfway


def _chunk(i: int) -> bytes:
    """Deterministic, incompressible content of chunk i (generated, never all in memory)."""
    return hashlib.shake_256(struct.pack(">I", i)).digest(CHUNK)


@dataclass
class Server:
    url: str
    pid: int

    def peak_rss_kib(self) -> int:
        """High-water mark of the server process's resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


@pytest.fixture
def server(app_state: ServiceState, free_tcp_port: int) -> Iterator[Server]:
    """The service in its own process (uvicorn), on the test's database and data dir."""
    settings = app_state.settings
    env = {
        **os.environ,
        "JZ_DATA_DIR": str(settings.data_dir),
        "JZ_DATABASE__URL": settings.database_url,
    }
    code = (
        "import uvicorn; from service.app import create_app; from service.settings import "
        f"Settings; uvicorn.run(create_app(Settings()), host='127.0.0.1', port={free_tcp_port},"
        " log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    url = f"http://127.0.0.1:{free_tcp_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the service did not start")
    yield Server(url, proc.pid)
    proc.terminate()
    proc.wait(10)


def _send_half_and_drop(base: str, account: Account, upload_id: str, offset: int,
                        data: bytes) -> None:
    """A raw PATCH that announces the whole chunk, sends half of it and aborts (RST)."""
    path = f"/api/v1/uploads/{upload_id}"
    headers = sign_request(
        "PATCH", path, None, data, account.key_id, account.secret, int(time.time()), new_nonce()
    )
    headers.update({"Upload-Offset": str(offset), "Content-Type": OCTETS,
                    "Content-Length": str(len(data))})
    host, port = base.removeprefix("http://").split(":")
    head = f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    ) + "\r\n"
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head.encode("ascii") + data[: len(data) // 2])
    time.sleep(0.3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _wait_for_no_chunk_files(state: ServiceState) -> None:
    """The server has finished with the dropped request once its chunk file is gone."""
    uploads_dir = state.settings.data_dir / "uploads"
    deadline = time.monotonic() + 20
    while list(uploads_dir.glob("*.chunk")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)


@pytest.mark.slow
def test_200mb_upload_resumes_after_a_dropped_connection(
    app_state: ServiceState, server: Server
) -> None:
    lab = add_lab(app_state, 33)
    client = JianzhengClient(server.url, lab.key_id, lab.secret, timeout=120)
    whole = hashlib.sha256()
    uid = start_upload(client, TOTAL)
    assert patch_upload(client, uid, 0, _chunk(0)).status_code == 204  # warm up the server
    peak_before = server.peak_rss_kib()
    whole.update(_chunk(0))
    for i in range(1, TOTAL // CHUNK):
        data = _chunk(i)
        whole.update(data)
        if i == DROP_AT:
            _send_half_and_drop(server.url, lab, uid, i * CHUNK, data)
            _wait_for_no_chunk_files(app_state)
            # the half chunk never counts: HEAD says where to resume
            assert _offset(client, uid) == DROP_AT * CHUNK
        r = patch_upload(client, uid, i * CHUNK, data)
        assert r.status_code == 204, r.text
        assert int(r.headers["upload-offset"]) == (i + 1) * CHUNK
    assert _offset(client, uid) == TOTAL
    digest = whole.hexdigest()
    # no chunk files are left behind
    leftovers = list((app_state.settings.data_dir / "uploads").glob("*.chunk"))
    assert leftovers == []
    before = _records(app_state)
    wrong = hashlib.sha256(b"something else").hexdigest()
    r = client.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": wrong})
    assert r.status_code == 422 and r.json()["code"] == "upload_hash_mismatch"
    assert r.json()["actual"] == digest
    assert not app_state.blobs.exists(digest) and _records(app_state) == before
    with session_scope(app_state.sessions) as s:
        row = s.get(Upload, uid)
        assert row is not None and row.status == "open" and row.sha256 is None
    r = client.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": digest})
    assert r.status_code == 200, r.text
    blob: Path = app_state.blobs.path(digest)
    assert blob.stat().st_size == TOTAL
    media = created(client.post("/api/v1/media", json_body={"kind": "video", "upload_id": uid}))
    rec = client.get(f"/api/v1/records/{media}").json()["record"]
    assert rec["files"][0]["sha256"] == digest and rec["files"][0]["size"] == TOTAL
    # the server's memory stayed flat: never more than a few chunks beyond the first
    assert (server.peak_rss_kib() - peak_before) * 1024 < 3 * CHUNK
    client.close()


def test_unsigned_or_stale_patch_is_refused_401_before_anything_else(
    app_state: ServiceState,
) -> None:
    """§5.1 before §5.2: a PATCH without valid signing headers gets 401 `auth_*`, whatever
    else is wrong with it (no Upload-Offset, wrong media type, unknown upload)."""
    app = make_app(app_state)
    lab = add_lab(app_state, 33)
    with client_for(app, lab) as c:
        uid = start_upload(c, 10)
        http = c.http
        path = f"/api/v1/uploads/{uid}"
        r = http.request("PATCH", path, content=b"0123456789")
        assert r.status_code == 401 and r.json()["code"] == "auth_missing"
        r = http.request("PATCH", "/api/v1/uploads/NOSUCH", headers={"X-JZ-Key": lab.key_id})
        assert r.status_code == 401 and r.json()["code"] == "auth_missing"
        stale = sign_request(
            "PATCH", path, None, b"0123456789", lab.key_id, lab.secret,
            int(time.time()) - 3600, new_nonce(),
        )
        r = http.request("PATCH", path, content=b"0123456789", headers=stale)
        assert r.status_code == 401 and r.json()["code"] == "auth_expired"
        unknown = sign_request(
            "PATCH", path, None, b"0123456789", "jzk_nosuchkey", "secret",
            int(time.time()), new_nonce(),
        )
        r = http.request("PATCH", path, content=b"0123456789", headers=unknown)
        assert r.status_code == 401 and r.json()["code"] == "auth_unknown_key"
        # with valid headers, the upload's own checks come next
        r = patch_upload(c, uid, 5, b"0123456789")
        assert r.status_code == 409 and r.json()["code"] == "upload_offset_mismatch"
