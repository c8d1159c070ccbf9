"""The fast path of the JSON record POSTs (`_RecordRoute`, service/api/records.py), on
SQLite and PostgreSQL.

A signed JSON request from a lab key the process already knows is checked in memory,
validated, and written in one worker-thread hop with its nonce in the record's
transaction. These tests prove the fast path was taken (the general route's signature
check is made to fail), that it writes what the general route writes, and that it
refuses what the general route refuses, including a replay of a request whose work
failed (its nonce is burnt all the same).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from service.api import auth
from service.client import new_nonce, sign_request
from service.domain import accounts
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Nonce, Outbox, Record, RecordParent
from tests.labkit import Account, add_lab, make_app, seed_record
from tests.recordkit import commission_body, project_body
from verifier.merkle import leaf_hash

PROJECTS = "/api/v1/projects"
COMMISSIONS = "/api/v1/commissions"


@dataclass
class World:
    state: ServiceState
    http: TestClient
    lab: Account


@pytest.fixture
def world(app_state: ServiceState) -> Iterator[World]:
    lab = add_lab(app_state, 51)
    with TestClient(make_app(app_state), raise_server_exceptions=False) as http:
        yield World(app_state, http, lab)


def post(w: World, path: str, body: dict[str, Any] | bytes, *, nonce: str | None = None,
         extra: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = sign_request("POST", path, "", raw, w.lab.key_id, w.lab.secret, int(time.time()),
                           nonce or new_nonce())
    headers["Content-Type"] = "application/json"
    headers.update(extra or {})
    return w.http.post(path, content=raw, headers=headers)


def general_route_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the general route authenticated a request")

    monkeypatch.setattr(auth, "verify_signed_request", refuse)


def nonces_of(w: World) -> set[str]:
    with w.state.sessions() as s:
        return set(s.scalars(select(Nonce.nonce).where(Nonce.key_id == w.lab.key_id)))


def test_fast_path_writes_what_the_general_route_writes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    # The first request of a process learns the key (general route).
    first = post(w, PROJECTS, project_body())
    assert first.status_code == 201, first.text
    general_route_fails(monkeypatch)
    nonce = new_nonce()
    r = post(w, PROJECTS, project_body(name="二号楼"), nonce=nonce)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    assert list(r.json()) == list(first.json()) == ["record_id", "leaf_hash", "type",
                                                   "created_at"]
    assert nonce in nonces_of(w)  # committed with the record
    contract = seed_record(w.state, w.lab.institution or "", "contract",
                           parents=[r.json()["record_id"]])
    c = post(w, COMMISSIONS, commission_body(contract))
    assert c.status_code == 201, c.text
    with w.state.sessions() as s:
        for answer in (r.json(), c.json()):
            rec = s.get(Record, answer["record_id"])
            assert rec is not None and rec.institution == w.lab.institution
            assert rec.leaf_hash == answer["leaf_hash"] == leaf_hash(rec.canonical).hex()
            assert s.scalar(select(Outbox.leaf_hash).where(Outbox.record_id == rec.id)) == (
                rec.leaf_hash
            )
            assert json.loads(rec.canonical)["created_at"] == answer["created_at"]
        project = s.get(Record, r.json()["record_id"])
        assert project is not None and json.loads(project.canonical)["body"]["name"] == "二号楼"
        child = c.json()["record_id"]
        links = s.scalars(select(RecordParent).where(RecordParent.child_id == child))
        assert [(p.parent_id, p.position) for p in links] == [(contract, 0)]


def test_fast_path_refusals(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    assert post(w, PROJECTS, project_body()).status_code == 201  # the key is cached
    general_route_fails(monkeypatch)
    # A replayed nonce: refused, nothing written.
    nonce = new_nonce()
    assert post(w, PROJECTS, project_body(name="A"), nonce=nonce).status_code == 201
    r = post(w, PROJECTS, project_body(name="B"), nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "auth_replayed"
    # A request whose work fails is answered, and its nonce is burnt: the replay is 401.
    nonce = new_nonce()
    r = post(w, COMMISSIONS, commission_body("01JD3Q2Y7ZK1M8R0F4T6W9XH5C"), nonce=nonce)
    assert r.status_code == 404 and r.json()["code"] == "parent_not_found", r.text
    assert nonce in nonces_of(w)
    r = post(w, COMMISSIONS, commission_body("01JD3Q2Y7ZK1M8R0F4T6W9XH5C"), nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "auth_replayed"
    # A bad signature never reaches the database.
    bad = new_nonce()
    r = post(w, PROJECTS, project_body(name="C"), nonce=bad, extra={"X-JZ-Signature": "0" * 64})
    assert r.status_code == 401 and r.json()["code"] == "auth_bad_signature"
    assert bad not in nonces_of(w)
    # A revoked key is refused at once although this process cached it.
    with session_scope(w.state.sessions) as s:
        accounts.revoke_key(s, w.lab.key_id)
    r = post(w, PROJECTS, project_body(name="D"))
    assert r.status_code == 401 and r.json()["code"] == "auth_unknown_key"
    with w.state.sessions() as s:
        names = sorted(json.loads(c)["body"]["name"] for c in s.scalars(
            select(Record.canonical).where(Record.type == "project")))
    assert names == ["A", "深圳湾科技园3号楼"]


def test_requests_the_fast_path_declines_answer_as_before(world: World) -> None:
    w = world
    assert post(w, PROJECTS, project_body()).status_code == 201
    # Bodies the model refuses get the general route's validation answers (and the
    # general route stores their nonce first, as always).
    nonce = new_nonce()
    r = post(w, PROJECTS, project_body(region=5), nonce=nonce)
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
    assert nonce in nonces_of(w)
    r = post(w, PROJECTS, b"{nope")
    assert r.status_code == 422 and r.json()["code"] == "malformed_json", r.text
    # With Idempotency-Key: the general route (a replay returns the first answer).
    r1 = post(w, PROJECTS, project_body(name="K"), extra={"Idempotency-Key": "k-1"})
    r2 = post(w, PROJECTS, project_body(name="K"), extra={"Idempotency-Key": "k-1"})
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert r2.headers["idempotent-replayed"] == "true"
