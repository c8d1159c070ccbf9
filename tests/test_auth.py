"""Every refusal of §5.1, with each signed element tampered, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.api.auth import verify_signed_request
from service.client import JianzhengClient, body_sha256, new_nonce, sign_request
from service.domain import accounts
from service.errors import JianzhengError
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from service.storage.models import Nonce
from tests.fixtures.db import make_settings
from tests.labkit import Account, add_auditor, add_lab, client_for, make_app, seed_record


@dataclass
class Env:
    state: ServiceState
    http: Any
    lab: Account
    other: Account
    auditor: Account
    lab_client: JianzhengClient
    code: str
    project: str


@pytest.fixture
def env(app_state: ServiceState) -> Iterator[Env]:
    app = make_app(app_state)
    lab, other, auditor = add_lab(app_state, 1), add_lab(app_state, 2), add_auditor(app_state)
    lab_client = client_for(app, lab)
    project = seed_record(app_state, lab.institution or "", "project")
    r = lab_client.issue_code("BG-1", project)
    assert r.status_code == 201, r.text
    yield Env(app_state, lab_client.http, lab, other, auditor, lab_client, r.json()["code"],
              project)


def send(
    env: Env,
    account: Account,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    *,
    sign_method: str | None = None,
    sign_path: str | None = None,
    sign_query: str | None = None,
    sign_body: bytes | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
    header_overrides: dict[str, Any] | None = None,
    secret: str | None = None,
) -> Any:
    ts = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or new_nonce()
    headers = sign_request(
        sign_method or method, sign_path or path, query if sign_query is None else sign_query,
        body if sign_body is None else sign_body, account.key_id, secret or account.secret,
        ts, nonce,
    )
    for k, v in (header_overrides or {}).items():
        if v is None:
            headers.pop(k, None)
        else:
            headers[k] = v
    headers["Content-Type"] = "application/json"
    url = path + ("?" + query if query else "")
    return env.http.request(method, url, content=body, headers=headers)


def code_of(resp: Any) -> str:
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
    return str(resp.json()["code"])


def test_valid_request_passes(env: Env) -> None:
    r = send(env, env.lab, "GET", f"/api/v1/reports/{env.code}")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "header", ["X-JZ-Key", "X-JZ-Timestamp", "X-JZ-Nonce", "X-JZ-Signature"]
)
def test_missing_header(env: Env, header: str) -> None:
    r = send(env, env.lab, "GET", f"/api/v1/reports/{env.code}", header_overrides={header: None})
    assert r.status_code == 401 and code_of(r) == "auth_missing"


def test_malformed_nonce_and_timestamp(env: Env) -> None:
    path = f"/api/v1/reports/{env.code}"
    for bad in ["short", "x" * 65, "has space in it!!", "dot.is.not.allowed.here"]:
        r = send(env, env.lab, "GET", path, header_overrides={"X-JZ-Nonce": bad})
        assert r.status_code == 401 and code_of(r) == "auth_missing", bad
    r = send(env, env.lab, "GET", path, header_overrides={"X-JZ-Timestamp": "12.5"})
    assert r.status_code == 401 and code_of(r) == "auth_missing"


def test_unknown_and_revoked_key(env: Env) -> None:
    path = f"/api/v1/reports/{env.code}"
    ghost = Account("jzl_" + "0" * 20, "whatever")
    r = send(env, ghost, "GET", path)
    assert r.status_code == 401 and code_of(r) == "auth_unknown_key"
    with session_scope(env.state.sessions) as s:
        accounts.revoke_key(s, env.lab.key_id)
    r = send(env, env.lab, "GET", path)
    assert r.status_code == 401 and code_of(r) == "auth_unknown_key"


def test_tampered_method(env: Env) -> None:
    r = send(env, env.lab, "PUT", f"/api/v1/reports/{env.code}", sign_method="GET")
    assert r.status_code == 401 and code_of(r) == "auth_bad_signature"


def test_tampered_path(env: Env) -> None:
    lower = env.code.lower()
    r = send(env, env.lab, "GET", f"/api/v1/reports/{lower}",
             sign_path=f"/api/v1/reports/{env.code}")
    assert r.status_code == 401 and code_of(r) == "auth_bad_signature"
    # The path is signed as sent: the lower-case form signed as such is accepted.
    r = send(env, env.lab, "GET", f"/api/v1/reports/{lower}")
    assert r.status_code == 200, r.text


def test_tampered_query(env: Env) -> None:
    q = f"institution={env.lab.institution}&year=2026"
    r = send(env, env.auditor, "GET", "/api/v1/audit/numbering", query=q.replace("2026", "2025"),
             sign_query=q)
    assert r.status_code == 401 and code_of(r) == "auth_bad_signature"
    r = send(env, env.auditor, "GET", "/api/v1/audit/numbering", query=q)
    assert r.status_code == 200, r.text
    # Reordered and re-encoded parameters sign the same canonical query.
    q2 = f"year=%32026&institution={env.lab.institution}"
    r = send(env, env.auditor, "GET", "/api/v1/audit/numbering", query=q2, sign_query=q)
    assert r.status_code == 200, r.text


def test_tampered_body(env: Env) -> None:
    good = json.dumps({"report_no": "BG-2", "project_id": env.project}).encode()
    evil = json.dumps({"report_no": "BG-3", "project_id": env.project}).encode()
    r = send(env, env.lab, "POST", "/api/v1/report-codes", body=evil, sign_body=good)
    assert r.status_code == 401 and code_of(r) == "auth_bad_signature"
    r = send(env, env.lab, "POST", "/api/v1/report-codes", body=good)
    assert r.status_code == 201, r.text


def test_tampered_timestamp_and_expiry(env: Env) -> None:
    path = f"/api/v1/reports/{env.code}"
    now = int(time.time())
    r = send(env, env.lab, "GET", path, timestamp=now,
             header_overrides={"X-JZ-Timestamp": str(now + 1)})
    assert r.status_code == 401 and code_of(r) == "auth_bad_signature"
    for ts in (now - 400, now + 400):
        r = send(env, env.lab, "GET", path, timestamp=ts)
        assert r.status_code == 401 and code_of(r) == "auth_expired"
    r = send(env, env.lab, "GET", path, timestamp=now - 250)
    assert r.status_code == 200, r.text


def test_tampered_and_replayed_nonce(env: Env) -> None:
    path = f"/api/v1/reports/{env.code}"
    nonce = new_nonce()
    r = send(env, env.lab, "GET", path, nonce=nonce,
             header_overrides={"X-JZ-Nonce": nonce[:-1] + ("A" if nonce[-1] != "A" else "B")})
    assert r.status_code == 401 and code_of(r) == "auth_bad_signature"
    r = send(env, env.lab, "GET", path, nonce=nonce)
    assert r.status_code == 200
    r = send(env, env.lab, "GET", path, nonce=nonce)
    assert r.status_code == 401 and code_of(r) == "auth_replayed"
    # A replay of a refused request is refused as a replay too, never executed.
    body = json.dumps({"report_no": "BG-9", "project_id": env.project}).encode()
    n2 = new_nonce()
    assert send(env, env.lab, "POST", "/api/v1/report-codes", body=body, nonce=n2).status_code \
        == 201
    r = send(env, env.lab, "POST", "/api/v1/report-codes", body=body, nonce=n2)
    assert r.status_code == 401 and code_of(r) == "auth_replayed"


def test_wrong_secret(env: Env) -> None:
    r = send(env, env.lab, "GET", f"/api/v1/reports/{env.code}", secret=env.other.secret)
    assert r.status_code == 401 and code_of(r) == "auth_bad_signature"


def test_forbidden_roles_and_institutions(env: Env) -> None:
    q = f"institution={env.lab.institution}&year=2026"
    r = send(env, env.lab, "GET", "/api/v1/audit/numbering", query=q)
    assert r.status_code == 403 and code_of(r) == "forbidden"
    body = json.dumps({"report_no": "BG-5", "project_id": env.project}).encode()
    r = send(env, env.auditor, "POST", "/api/v1/report-codes", body=body)
    assert r.status_code == 403 and code_of(r) == "forbidden"
    r = send(env, env.other, "GET", f"/api/v1/reports/{env.code}")
    assert r.status_code == 403 and code_of(r) == "forbidden"


def test_unsigned_bad_json_is_401_not_422(env: Env) -> None:
    r = env.http.post("/api/v1/report-codes", content=b"{nope",
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and code_of(r) == "auth_missing"


def test_nonce_accepted_once_across_processes(
    app_state: ServiceState, tmp_path: Path, db_url: str
) -> None:
    """Two engines (as two API processes would have) race on the same nonce: one wins."""
    lab = add_lab(app_state, 3)
    other_state = build_state(make_settings(tmp_path / "p2", db_url), chain=None, migrate=False)
    try:
        ts = str(int(time.time()))
        nonce = new_nonce()
        body_hash = body_sha256(b"")
        sig = sign_request("GET", "/api/v1/x", "", b"", lab.key_id, lab.secret, ts, nonce)
        results: list[str] = []
        barrier = threading.Barrier(8)

        def attempt(state: ServiceState) -> None:
            barrier.wait()
            try:
                verify_signed_request(
                    state, method="GET", path="/api/v1/x", query="", body_hash=body_hash,
                    key_id=lab.key_id, timestamp=ts, nonce=nonce,
                    signature=sig["X-JZ-Signature"],
                )
                results.append("ok")
            except JianzhengError as exc:
                results.append(exc.code)

        threads = [
            threading.Thread(target=attempt, args=(app_state if i % 2 else other_state,))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["auth_replayed"] * 7 + ["ok"]
    finally:
        other_state.engine.dispose()


def test_old_nonces_are_purged(app_state: ServiceState) -> None:
    lab = add_lab(app_state, 4)
    now = int(time.time())
    window = app_state.settings.security.replay_window_s
    with session_scope(app_state.sessions) as s:
        s.add(Nonce(key_id=lab.key_id, nonce="o" * 16, seen_at=now - 2 * window - 3600))
        s.add(Nonce(key_id=lab.key_id, nonce="r" * 16, seen_at=now - window))
    app_state.purge.last = 0.0
    ts = str(now)
    nonce = new_nonce()
    sig = sign_request("GET", "/p", "", b"", lab.key_id, lab.secret, ts, nonce)
    verify_signed_request(
        app_state, method="GET", path="/p", query="", body_hash=body_sha256(b""),
        key_id=lab.key_id, timestamp=ts, nonce=nonce, signature=sig["X-JZ-Signature"],
    )
    with session_scope(app_state.sessions) as s:
        left = sorted(n.nonce for n in s.query(Nonce).filter(Nonce.key_id == lab.key_id))
    assert left == sorted(["r" * 16, nonce])
