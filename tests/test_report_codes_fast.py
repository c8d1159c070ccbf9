"""The fast path of `POST /api/v1/report-codes` on PostgreSQL (service/api/reports.py).

A signed request from a key, project and region the process knows is checked in memory
and issued in one statement that also stores the nonce: on the event loop (async
connection pool, when the app's lifespan ran, as under uvicorn) or in a worker thread
(without the lifespan, as with a bare TestClient). These tests prove the fast path was
taken (the general issuance is made to fail), that it writes exactly what the general
path writes, and that it refuses what the general path refuses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from service.client import new_nonce, sign_request
from service.clock import china_year, utc_now
from service.domain import accounts
from service.domain import reports as domain
from service.domain.codes import parse_code
from service.domain.evidence import build_record
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from service.storage.models import NumberingVoid, Outbox, Record, RecordParent, ReportCode
from tests.fixtures.db import make_settings
from tests.labkit import Account, add_lab, make_app, seed_record
from verifier.canonical import canonicalize
from verifier.merkle import leaf_hash

pytestmark = pytest.mark.postgres

PATH = "/api/v1/report-codes"


@dataclass
class World:
    state: ServiceState
    http: TestClient
    lab: Account
    project: str
    mode: str


@pytest.fixture(params=["event_loop", "worker_thread"])
def world(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Iterator[World]:
    state = build_state(make_settings(tmp_path, pg_url), chain=None)
    lab = add_lab(state, 41)
    project = seed_record(state, lab.institution or "", "project")
    with ExitStack() as stack:
        http = TestClient(make_app(state), raise_server_exceptions=False)
        if request.param == "event_loop":
            stack.enter_context(http)  # runs the lifespan: the async pool exists
        yield World(state, http, lab, project, request.param)
    state.engine.dispose()


def post(w: World, body: bytes, *, nonce: str | None = None, account: Account | None = None,
         extra: dict[str, str] | None = None) -> Any:
    who = account or w.lab
    headers = sign_request("POST", PATH, "", body, who.key_id, who.secret, int(time.time()),
                           nonce or new_nonce())
    headers["Content-Type"] = "application/json"
    headers.update(extra or {})
    return w.http.post(PATH, content=body, headers=headers)


def code_body(report_no: str, project: str) -> bytes:
    return json.dumps({"report_no": report_no, "project_id": project}).encode()


def general_path_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the general issuance ran")

    monkeypatch.setattr(domain, "issue_code", refuse)


def test_fast_path_writes_what_the_general_path_writes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    # The first request of a process learns the key, region and project (general path).
    first = post(w, code_body("BG-1", w.project))
    assert first.status_code == 201, first.text
    assert (w.mode == "event_loop") == (w.state.async_pool is not None)
    general_path_fails(monkeypatch)
    answers = [post(w, code_body(f"BG-{n}", w.project)) for n in range(2, 12)]
    assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
    year = china_year()
    with w.state.sessions() as s:
        project = s.get(Record, w.project)
        assert project is not None
        for n, r in enumerate([first, *answers], start=1):
            out = r.json()
            assert r.headers["content-type"] == "application/json"
            assert list(out) == ["code", "verify_url", "record_id", "leaf_hash", "report_no",
                                 "year"]
            code = out["code"]
            assert parse_code(code).canonical == code and code.startswith("440300")
            assert out["verify_url"] == f"{w.state.settings.public.base_url}/v/{code}"
            assert (out["report_no"], out["year"]) == (f"BG-{n}", year)
            rec = s.get(Record, out["record_id"])
            assert rec is not None
            assert (rec.type, rec.institution, rec.code) == ("report", w.lab.institution, code)
            # Byte for byte the record build_record + canonicalize give for these facts.
            expected = canonicalize(build_record(
                record_id=rec.id, type="report", institution=w.lab.institution or "",
                created_at=rec.created_at, parents=[project.leaf_hash], files=[],
                body={"event": "code_issued", "code": code, "report_no": f"BG-{n}",
                      "year": year, "region": "440300", "history": {}},
            ))
            assert rec.canonical == expected
            assert rec.leaf_hash == out["leaf_hash"] == leaf_hash(expected).hex()
            row = s.get(ReportCode, code)
            assert row is not None
            assert (row.institution, row.year, row.report_no, row.project_record_id,
                    row.issue_record_id, row.status) == (
                w.lab.institution, year, f"BG-{n}", w.project, rec.id, "issued")
            parents = s.scalars(select(RecordParent).where(RecordParent.child_id == rec.id))
            assert [(p.parent_id, p.position) for p in parents] == [(w.project, 0)]
            queued = s.scalars(select(Outbox).where(Outbox.record_id == rec.id)).one()
            assert queued.leaf_hash == rec.leaf_hash


def test_fast_path_refusals(world: World) -> None:
    w = world
    assert post(w, code_body("BG-1", w.project)).status_code == 201  # warm the caches
    # Replayed nonce: refused, nothing written, not even for a new number.
    nonce = new_nonce()
    assert post(w, code_body("BG-2", w.project), nonce=nonce).status_code == 201
    r = post(w, code_body("BG-2", w.project), nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "auth_replayed"
    r = post(w, code_body("BG-3", w.project), nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "auth_replayed"
    # Duplicate and voided numbers: 409 (the fast statement inserts nothing).
    r = post(w, code_body("BG-2", w.project))
    assert r.status_code == 409 and r.json()["code"] == "duplicate_report_no"
    with session_scope(w.state.sessions) as s:
        void_rec = seed_record(w.state, w.lab.institution or "", "numbering_void")
        s.add(NumberingVoid(institution=w.lab.institution, year=china_year(), report_no="BG-4",
                            code=None, reason="x", record_id=void_rec,
                            voided_at=utc_now()))
    r = post(w, code_body("BG-4", w.project))
    assert r.status_code == 409 and r.json()["code"] == "duplicate_report_no"
    # A bad signature never reaches the database.
    r = post(w, code_body("BG-5", w.project), extra={"X-JZ-Signature": "0" * 64})
    assert r.status_code == 401 and r.json()["code"] == "auth_bad_signature"
    # Another lab's project: 403, as on the general path.
    other = add_lab(w.state, 42)
    other_project = seed_record(w.state, other.institution or "", "project")
    r = post(w, code_body("BG-6", other_project))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # A revoked key is refused at once although this process cached it.
    with session_scope(w.state.sessions) as s:
        accounts.revoke_key(s, w.lab.key_id)
    r = post(w, code_body("BG-7", w.project))
    assert r.status_code == 401 and r.json()["code"] == "auth_unknown_key"
    with w.state.sessions() as s:
        issued = sorted(s.scalars(select(ReportCode.report_no)))
    assert issued == ["BG-1", "BG-2"]


def test_requests_the_fast_path_declines_answer_as_before(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    assert post(w, code_body("BG-1", w.project)).status_code == 201
    # With Idempotency-Key: the general path (a replay returns the first answer).
    r1 = post(w, code_body("BG-2", w.project), extra={"Idempotency-Key": "k-2"})
    r2 = post(w, code_body("BG-2", w.project), extra={"Idempotency-Key": "k-2"})
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert r2.headers["idempotent-replayed"] == "true"
    # Bodies that are not plainly valid get the general validation errors.
    for body, code in (
        (b'{"report_no": "x", "project_id": "y", "z": 1}', "unknown_field"),
        (b'{"report_no": 5, "project_id": "y"}', "validation_error"),
        (b'{"report_no": "\\u0001", "project_id": "y"}', "invalid_report_no"),
        (b"{nope", "malformed_json"),
    ):
        r = post(w, body)
        assert r.status_code == 422 and r.json()["code"] == code, r.text
    # Surrounding blanks are trimmed the same way on both paths.
    general_path_fails(monkeypatch)
    r = post(w, code_body("  BG-3 ", w.project))
    assert r.status_code == 201 and r.json()["report_no"] == "BG-3"


def test_fast_path_reads_the_state_cache(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    institution = w.lab.institution or ""
    assert post(w, code_body("BG-1", w.project)).status_code == 201
    known = w.state.issuance_cache.known(institution, w.project)
    assert known is not None and known[0].id == w.project and known[1] == "440300"
    # A fresh cache (as in another process) knows nothing: the general path issues once
    # and teaches it, then the fast path takes over again.
    w.state.issuance_cache = domain.IssuanceCache()
    calls: list[str] = []
    general = domain.issue_code

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["report_no"])
        return general(*args, **kwargs)

    monkeypatch.setattr(domain, "issue_code", counted)
    assert post(w, code_body("BG-2", w.project)).status_code == 201
    assert post(w, code_body("BG-3", w.project)).status_code == 201
    assert calls == ["BG-2"]
