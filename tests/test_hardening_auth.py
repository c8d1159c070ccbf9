"""Hardening of signed requests (issue 11, findings 4 and 11).

- §5.1's header checks (present, in the window, known key) run before the body is read,
  so a client without a key cannot make the service buffer a large body: seen on a real
  socket, where the answer arrives although the announced body never does;
- the JSON metadata route has the ordinary body limit, not the PDF's;
- a query two different requests could share a signature of (a repeated name, a raw `+`)
  is refused 400 `query_ambiguous`;
- a key whose stored secret no longer decrypts is refused 401, not a 500.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from service.client import query_ambiguity, sign_request
from service.state import ServiceState, build_state
from tests.fixtures.db import make_settings
from tests.fixtures.server import head_only_request, served
from tests.labkit import add_lab, client_for, make_app

PDF_BIG = 40 * 1024 * 1024  # under the PDF limit (50 MB)
JSON_BIG = 9 * 1024 * 1024  # under the ordinary limit (10 MB)


def _head(method: str, path: str, length: int, extra: str = "", ctype: str = "") -> bytes:
    ctype = ctype or "application/json"
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("method", "path", "ctype", "size"),
    [
        ("POST", "/api/v1/projects", "application/json", JSON_BIG),
        ("PUT", "/api/v1/reports/44030026K7QZ3M9XB2T", "application/json", JSON_BIG),
        ("PUT", "/api/v1/reports/44030026K7QZ3M9XB2T/pdf", "application/pdf", PDF_BIG),
        ("POST", "/api/v1/contracts", "multipart/form-data; boundary=x", JSON_BIG),
    ],
)
def test_unsigned_request_is_refused_before_its_body_arrives(
    app_state: ServiceState, method: str, path: str, ctype: str, size: int
) -> None:
    with served(make_app(app_state)) as base:
        unsigned = head_only_request(base, _head(method, path, size, ctype=ctype))
        assert _status(unsigned) == 401, unsigned[:300]
        now = str(int(time.time()))
        unknown_key = (
            f"X-JZ-Key: jzl_{'0' * 32}\r\nX-JZ-Timestamp: {now}\r\n"
            f"X-JZ-Nonce: {'n' * 20}\r\nX-JZ-Signature: {'0' * 64}\r\n"
        )
        refused = head_only_request(base, _head(method, path, size, unknown_key, ctype))
        assert _status(refused) == 401, refused[:300]
        stale = unknown_key.replace(now, str(int(time.time()) - 3600))
        assert _status(head_only_request(base, _head(method, path, size, stale, ctype))) == 401


def test_metadata_route_has_the_json_body_limit(app_state: ServiceState) -> None:
    lab = add_lab(app_state, 71)
    client = client_for(make_app(app_state), lab)
    code = "44030026K7QZ3M9XB2T"
    big = b'{"conclusion": "pass", "pad": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    r = client.request("PUT", f"/api/v1/reports/{code}", content=big,
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.text[:300]


@pytest.mark.parametrize(
    "query",
    ["institution=A&institution=B", "rule=a+b", "x=1&x=1", "a=%2B&a="],
)
def test_ambiguous_query_is_refused(app_state: ServiceState, query: str) -> None:
    lab = add_lab(app_state, 72)
    client = client_for(make_app(app_state), lab)
    r = client.request("GET", "/api/v1/flags", query=query)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "query_ambiguous"


def test_unambiguous_queries_pass() -> None:
    assert query_ambiguity("institution=A&rule=b%2Bc&limit=5") is None
    assert query_ambiguity("a=%20") is None
    assert query_ambiguity("") is None


def test_a_key_whose_secret_cannot_be_decrypted_is_refused_401(
    tmp_path: Path, db_url: str
) -> None:
    state = build_state(make_settings(tmp_path, db_url), chain=None)
    lab = add_lab(state, 73)
    state.close()
    other = build_state(
        make_settings(tmp_path, db_url, security={"master_key": "another-master-key-" + "z" * 20}),
        chain=None,
        migrate=False,
    )
    try:
        ts, nonce = str(int(time.time())), "q" * 20
        headers = sign_request("GET", "/api/v1/flags", "", b"", lab.key_id, lab.secret, ts, nonce)
        from starlette.testclient import TestClient

        r = TestClient(make_app(other), raise_server_exceptions=False).get(
            "/api/v1/flags", headers=headers
        )
        assert r.status_code == 401, r.text
        body = json.loads(r.text)
        assert body["code"] == "auth_unknown_key" and "unreadable" in body["detail"]
    finally:
        other.close()
