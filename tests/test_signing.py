"""Request signing (INTERFACE §5.1): the published vectors, client and server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from service.api.auth import CallerDep, SignedRoute, verify_signed_request
from service.api.problems import install_problem_handlers
from service.client import (
    canonical_query,
    encode_query,
    query_ambiguity,
    sign_request,
    string_to_sign,
)
from service.clock import utc_now
from service.domain.accounts import SecretBox
from service.errors import JianzhengError
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import ApiKey
from tests.fixtures.clock import ManualClock
from tests.labkit import add_lab

VECTORS = json.loads((Path(__file__).parent / "vectors" / "signing.json").read_text("utf-8"))
CASES = VECTORS["vectors"]
IDS = [c["description"] for c in CASES]


@pytest.mark.parametrize("v", CASES, ids=IDS)
def test_client_reproduces_vector(v: dict[str, str]) -> None:
    assert canonical_query(v["query"]) == v["canonical_query"]
    body = v["body"].encode("utf-8")
    text = string_to_sign(
        v["method"], v["path"], v["query"], v["timestamp"], v["nonce"], v["body_sha256"]
    )
    assert text == v["string_to_sign"]
    headers = sign_request(
        v["method"], v["path"], v["query"], body, VECTORS["key_id"], VECTORS["secret"],
        v["timestamp"], v["nonce"],
    )
    assert headers == {
        "X-JZ-Key": VECTORS["key_id"],
        "X-JZ-Timestamp": v["timestamp"],
        "X-JZ-Nonce": v["nonce"],
        "X-JZ-Signature": v["signature"],
    }


def test_vector_file_covers_the_tricky_cases() -> None:
    queries = [c["query"] for c in CASES]
    assert any("+" in q for q in queries)
    assert any("&&" in q or q.endswith("&") for q in queries)
    assert any(any(ord(ch) > 127 for ch in q) for q in queries)
    assert any("%7e" in q for q in queries)
    assert "tag=&tag=a&tag=m&tag=z" in [c["canonical_query"] for c in CASES]


def _install_vector_key(state: ServiceState) -> None:
    key_id, secret = VECTORS["key_id"], VECTORS["secret"]
    lab = add_lab(state, 77)
    with session_scope(state.sessions) as s:
        s.add(
            ApiKey(
                key_id=key_id, role="lab", institution=lab.institution, auditor_id=None,
                secret_ciphertext=SecretBox.from_settings(state.settings).seal(key_id, secret),
                created_at=utc_now(),
            )
        )


def test_server_accepts_every_vector_once(app_state: ServiceState) -> None:
    _install_vector_key(app_state)
    for v in CASES:
        kwargs = dict(
            method=v["method"].upper(), path=v["path"], query=v["query"],
            body_hash=v["body_sha256"], key_id=VECTORS["key_id"], timestamp=v["timestamp"],
            nonce=v["nonce"], signature=v["signature"], now=float(v["timestamp"]),
        )
        caller = verify_signed_request(app_state, **kwargs)
        assert caller.key_id == VECTORS["key_id"]
        with pytest.raises(JianzhengError) as exc:
            verify_signed_request(app_state, **kwargs)
        assert exc.value.code == "auth_replayed"


def test_server_checks_vectors_over_http(
    app_state: ServiceState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raw path and query reach the check exactly as sent (ASGI raw_path, query_string)."""
    _install_vector_key(app_state)
    app = FastAPI()
    app.state.jz = app_state
    install_problem_handlers(app)
    from fastapi import APIRouter

    router = APIRouter(route_class=SignedRoute)

    @router.api_route("/api/v1/{rest:path}", methods=["GET", "POST", "PUT"])
    def echo(rest: str, caller: CallerDep) -> dict[str, str]:
        return {"key": caller.key_id}

    app.include_router(router)
    http = TestClient(app)
    for v in CASES:
        app_state.clock = ManualClock(float(v["timestamp"]))
        headers = {
            "X-JZ-Key": VECTORS["key_id"], "X-JZ-Timestamp": v["timestamp"],
            "X-JZ-Nonce": v["nonce"], "X-JZ-Signature": v["signature"],
        }
        url = v["path"] + ("?" + v["query"] if v["query"] else "")
        r = http.request(v["method"].upper(), url, content=v["body"].encode(), headers=headers)
        if query_ambiguity(v["query"]) is not None:
            # The vector pins §5.1's canonical form (its signature verifies: the test above),
            # but the server refuses a query two requests could share a signature of.
            assert r.status_code == 400 and r.json()["code"] == "query_ambiguous", r.text
            continue
        assert r.status_code == 200, (v["description"], r.text)
        # The same request with one byte of the body changed is refused.
        headers["X-JZ-Nonce"] = v["nonce"] + "x"
        r = http.request(v["method"].upper(), url, content=v["body"].encode() + b" ",
                         headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "auth_bad_signature"


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)


@given(st.lists(st.tuples(_text, _text), max_size=6))
def test_canonical_query_ignores_order_and_encoding(pairs: list[tuple[str, str]]) -> None:
    sent = encode_query(pairs)
    reversed_sent = encode_query(list(reversed(pairs)))
    assert canonical_query(sent) == canonical_query(reversed_sent)
    # Percent-encoding every byte gives the same canonical form.
    full = "&".join(
        "".join(f"%{b:02x}" for b in k.encode()) + "=" + "".join(f"%{b:02x}" for b in v.encode())
        for k, v in pairs
    )
    assert canonical_query(full) == canonical_query(sent)
