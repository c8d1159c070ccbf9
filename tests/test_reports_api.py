"""Report codes, metadata, revocation, voids, numbering audit, proofs, idempotency, bad input."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.api.auth import verify_signed_request  # noqa: F401  (import check)
from service.client import JianzhengClient
from service.clock import china_year, utc_now
from service.domain.codes import parse_code
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from service.storage.models import (
    ChainRevocation,
    IdempotencyKey,
    NumberingVoid,
    Record,
    RecordParent,
    ReportCode,
)
from tests.fixtures.db import make_settings
from tests.labkit import Account, add_auditor, add_lab, client_for, make_app, seed_record


@dataclass
class Env:
    state: ServiceState
    a: Account
    b: Account
    auditor: Account
    ca: JianzhengClient
    cb: JianzhengClient
    cz: JianzhengClient
    project_a: str
    project_b: str


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> Iterator[Env]:
    state = build_state(
        make_settings(tmp_path, db_url, security={"max_body_bytes": 4096}), chain=None
    )
    app = make_app(state)
    a, b, auditor = add_lab(state, 1), add_lab(state, 2, region="110105"), add_auditor(state)
    yield Env(
        state, a, b, auditor, client_for(app, a), client_for(app, b), client_for(app, auditor),
        seed_record(state, a.institution or "", "project"),
        seed_record(state, b.institution or "", "project"),
    )
    state.engine.dispose()


def problem(resp: object, status: int, code: str) -> None:
    r = resp  # httpx.Response
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore
    assert r.json()["code"] == code, r.text  # type: ignore[attr-defined]


def issue(env: Env, report_no: str, client: JianzhengClient | None = None,
          project: str | None = None) -> str:
    r = (client or env.ca).issue_code(report_no, project or env.project_a)
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


def test_issue_code_binds_institution_year_number(env: Env) -> None:
    r = env.ca.issue_code("BG-2026-000001", env.project_a)
    assert r.status_code == 201
    out = r.json()
    code = out["code"]
    year = china_year()
    assert parse_code(code).canonical == code
    assert code.startswith("440300" + f"{year % 100:02d}")
    assert out["verify_url"] == f"{env.state.settings.public.base_url}/v/{code}"
    with env.state.sessions() as s:
        rec = s.get(Record, out["record_id"])
        assert rec is not None and rec.type == "report" and rec.code == code
        obj = json.loads(rec.canonical)
        project = s.get(Record, env.project_a)
        assert project is not None
        assert obj["parents"] == [project.leaf_hash]
        assert obj["body"] == {"event": "code_issued", "code": code,
                               "report_no": "BG-2026-000001", "year": year, "region": "440300",
                               "history": {}}  # §7.1: the code-issued stage cites no sample
        row = s.get(ReportCode, code)
        assert row is not None
        assert (row.institution, row.year, row.report_no) == (env.a.institution, year,
                                                              "BG-2026-000001")
    # The same number again: 409; the same number at another institution: fine.
    problem(env.ca.issue_code("BG-2026-000001", env.project_a), 409, "duplicate_report_no")
    assert env.cb.issue_code("BG-2026-000001", env.project_b).status_code == 201


def test_project_must_be_own_project(env: Env) -> None:
    problem(env.ca.issue_code("X1", env.project_b), 403, "forbidden")
    sample = seed_record(env.state, env.a.institution or "", "sample", parents=[env.project_a])
    problem(env.ca.issue_code("X2", sample), 422, "unknown_parent")
    problem(env.ca.issue_code("X3", "01NOPE"), 422, "unknown_parent")


def test_code_accepted_in_any_form_and_typos_caught(env: Env) -> None:
    code = issue(env, "BG-7")
    printed = parse_code(code).printed
    for form in (code.lower(), printed, printed.replace("-", "%20")):
        r = env.ca.get(f"/api/v1/reports/{form}")
        assert r.status_code == 200, (form, r.text)
        assert r.json()["code"] == code
    typo = code[:10] + ("A" if code[10] != "A" else "B") + code[11:]
    problem(env.ca.get(f"/api/v1/reports/{typo}"), 404, "unknown_code")


def test_metadata_revocation_and_chain_queue(env: Env) -> None:
    code = issue(env, "BG-10")
    sample = seed_record(env.state, env.a.institution or "", "sample", parents=[env.project_a])
    test_rec = seed_record(env.state, env.a.institution or "", "test_record", parents=[sample])
    meta = {"conclusion": "fail", "issued_on": "2026-11-20", "approver": "张三",
            "parents": [sample, test_rec]}
    r = env.ca.put(f"/api/v1/reports/{code}", json_body=meta)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "reported" and r.json()["nonconforming"] is True
    meta_record = r.json()["record_id"]
    with env.state.sessions() as s:
        parents = [p.parent_id for p in s.scalars(
            select(RecordParent).where(RecordParent.child_id == meta_record)
            .order_by(RecordParent.position))]
        row = s.get(ReportCode, code)
        assert row is not None
        assert parents == [row.issue_record_id, sample, test_rec]
    # The parents must come from the code's project.
    other_project = seed_record(env.state, env.a.institution or "", "project")
    foreign = seed_record(env.state, env.a.institution or "", "sample", parents=[other_project])
    foreign_test = seed_record(
        env.state, env.a.institution or "", "test_record", parents=[foreign]
    )
    r = env.ca.put(f"/api/v1/reports/{code}",
                   json_body={**meta, "parents": [sample, test_rec, foreign_test]})
    problem(r, 422, "project_mismatch")
    assert foreign_test in r.json()["detail"]
    # A report derives from test data: samples or media alone are refused.
    media = seed_record(env.state, env.a.institution or "", "media")
    for only in ([sample], [media], [sample, media]):
        problem(env.ca.put(f"/api/v1/reports/{code}", json_body={**meta, "parents": only}),
                422, "test_record_required")
    # A wrong kind of parent, or another lab's record, is refused.
    problem(env.ca.put(f"/api/v1/reports/{code}", json_body={**meta, "parents": [env.project_a]}),
            422, "invalid_parent")
    b_sample = seed_record(env.state, env.b.institution or "", "sample", parents=[env.project_b])
    problem(env.ca.put(f"/api/v1/reports/{code}", json_body={**meta, "parents": [b_sample]}),
            403, "forbidden")
    # Superseded by a new code of the same lab.
    new_code = issue(env, "BG-11")
    r = env.ca.post(f"/api/v1/reports/{code}/revocation",
                    json_body={"reason": "录入错误", "superseded_by": parse_code(new_code).printed})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "superseded" and out["superseded_by"] == new_code
    subject = hashlib.sha256(b"jianzheng/report-code/" + code.encode()).hexdigest()
    assert out["revocation_subject"] == subject
    with env.state.sessions() as s:
        queued = s.get(ChainRevocation, subject)
        rec = s.get(Record, out["record_id"])
        assert queued is not None and rec is not None
        assert (queued.status, queued.reason, queued.code) == ("pending", rec.leaf_hash, code)
        assert rec.type == "revocation"
        assert json.loads(rec.canonical)["body"]["superseded_by"] == new_code
    problem(env.ca.post(f"/api/v1/reports/{code}/revocation", json_body={"reason": "again"}),
            409, "report_revoked")
    problem(env.ca.put(f"/api/v1/reports/{code}", json_body=meta), 409, "report_revoked")
    problem(env.ca.post(f"/api/v1/reports/{new_code}/revocation",
                        json_body={"reason": "x", "superseded_by": new_code}),
            422, "invalid_superseded_by")


def test_sealed_report_cannot_change_or_be_voided(env: Env) -> None:
    code = issue(env, "BG-20")
    with session_scope(env.state.sessions) as s:
        row = s.get(ReportCode, code)
        assert row is not None
        row.sealed_at = utc_now()
    sample = seed_record(env.state, env.a.institution or "", "sample", parents=[env.project_a])
    meta = {"conclusion": "pass", "issued_on": "2026-11-20", "approver": "李四",
            "parents": [sample]}
    problem(env.ca.put(f"/api/v1/reports/{code}", json_body=meta), 409, "report_sealed")
    problem(env.ca.post("/api/v1/numbering/voids", json_body={"report_no": "BG-20",
                                                              "reason": "x"}),
            409, "report_sealed")


def test_isolation_between_institutions(env: Env) -> None:
    code = issue(env, "BG-30")
    sample = seed_record(env.state, env.a.institution or "", "sample", parents=[env.project_a])
    meta = {"conclusion": "pass", "issued_on": "2026-11-20", "approver": "x", "parents": [sample]}
    problem(env.cb.get(f"/api/v1/reports/{code}"), 403, "forbidden")
    problem(env.cb.put(f"/api/v1/reports/{code}", json_body=meta), 403, "forbidden")
    problem(env.cb.post(f"/api/v1/reports/{code}/revocation", json_body={"reason": "x"}),
            403, "forbidden")
    b_code = issue(env, "B-1", env.cb, env.project_b)
    # B cannot name A's code as its successor, nor A's records as parents.
    problem(env.cb.post(f"/api/v1/reports/{b_code}/revocation",
                        json_body={"reason": "x", "superseded_by": code}),
            422, "invalid_superseded_by")
    problem(env.cb.put(f"/api/v1/reports/{b_code}", json_body=meta), 403, "forbidden")
    # Proofs: own record pending (202), another lab's record 403, auditors see any.
    assert env.ca.get(f"/api/v1/records/{sample}/proof").status_code == 202
    problem(env.cb.get(f"/api/v1/records/{sample}/proof"), 403, "forbidden")
    r = env.cz.get(f"/api/v1/records/{sample}/proof")
    assert r.status_code == 202 and r.json() == {"status": "pending"}
    problem(env.cz.get("/api/v1/records/01NOPE/proof"), 404, "record_not_found")
    # B voiding "BG-30" voids B's own number, never A's code.
    r = env.cb.post("/api/v1/numbering/voids", json_body={"report_no": "BG-30", "reason": "x"})
    assert r.status_code == 201 and r.json()["code"] is None
    assert env.ca.get(f"/api/v1/reports/{code}").json()["status"] == "issued"


def test_numbering_audit_reports_exact_history(env: Env) -> None:
    """Scripted history: 1-3 issued, 4 never registered, 5 voided unissued, 6 issued then
    voided, 7 issued long ago and never signed (unfinished), 8 and 10 issued and signed
    (9 missing), plus a separate series JC-1, JC-3 and a number without digits."""
    year = china_year()
    codes = {n: issue(env, f"BG-{year}-{n:04d}") for n in (1, 2, 3, 6, 7, 8, 10)}
    jc1, jc3 = issue(env, "JC-1"), issue(env, "JC-3")
    odd = issue(env, "特殊编号")
    old = utc_now() - timedelta(days=3)
    with session_scope(env.state.sessions) as s:
        for n in (1, 2, 3, 6, 7, 8, 10):
            row = s.get(ReportCode, codes[n])
            assert row is not None
            row.issued_at = old
            if n in (1, 2, 3, 8, 10):
                row.sealed_at = old + timedelta(hours=1)
    for jc in (jc1, jc3, odd):
        with session_scope(env.state.sessions) as s:
            row = s.get(ReportCode, jc)
            assert row is not None
            row.sealed_at = utc_now()
    for n, reason in ((5, "打印错误"), (6, "委托撤回")):
        r = env.ca.post("/api/v1/numbering/voids",
                        json_body={"report_no": f"BG-{year}-{n:04d}", "reason": reason})
        assert r.status_code == 201, r.text
    problem(env.ca.post("/api/v1/numbering/voids",
                        json_body={"report_no": f"BG-{year}-0005", "reason": "again"}),
            409, "already_voided")
    problem(env.ca.issue_code(f"BG-{year}-0005", env.project_a), 409, "duplicate_report_no")
    # Another institution's numbers never show up in A's audit.
    issue(env, f"BG-{year}-0004", env.cb, env.project_b)

    r = env.cz.get("/api/v1/audit/numbering",
                   query={"institution": env.a.institution, "year": year})
    assert r.status_code == 200, r.text
    audit = r.json()
    assert sorted(i["report_no"] for i in audit["issued"]) == sorted(
        [f"BG-{year}-{n:04d}" for n in (1, 2, 3, 6, 7, 8, 10)] + ["JC-1", "JC-3", "特殊编号"]
    )
    assert {v["report_no"]: (v["code"], v["reason"]) for v in audit["voided"]} == {
        f"BG-{year}-0005": (None, "打印错误"),
        f"BG-{year}-0006": (codes[6], "委托撤回"),
    }
    assert [u["report_no"] for u in audit["unfinished"]] == [f"BG-{year}-0007"]
    assert sorted(m["report_no"] for m in audit["missing"]) == sorted(
        [f"BG-{year}-0004", f"BG-{year}-0009", "JC-2"]
    )
    assert audit["unsequenced"] == ["特殊编号"]
    assert audit["counts"] == {"issued": 10, "voided": 2, "unfinished": 1, "missing": 3}
    # The threshold is configurable: with 0 s the fresh unsigned codes count too (none here
    # besides #7 since all others are signed or voided).
    r = env.cz.get("/api/v1/audit/numbering", query={
        "institution": env.a.institution, "year": year, "unfinished_after_s": 10 * 86400})
    assert r.json()["unfinished"] == []
    problem(env.cz.get("/api/v1/audit/numbering", query={"institution": "123", "year": year}),
            422, "invalid_uscc")


def test_idempotent_retry_returns_first_answer(env: Env) -> None:
    body = {"report_no": "BG-40", "project_id": env.project_a}
    r1 = env.ca.post("/api/v1/report-codes", json_body=body, idempotency_key="req-40")
    r2 = env.ca.post("/api/v1/report-codes", json_body=body, idempotency_key="req-40")
    assert r1.status_code == r2.status_code == 201
    assert r1.json() == r2.json() and r2.headers["idempotent-replayed"] == "true"
    problem(env.ca.post("/api/v1/report-codes", json_body={**body, "report_no": "BG-41"},
                        idempotency_key="req-40"), 422, "idempotency_mismatch")
    # Without the key, a retry is a second request: 409.
    problem(env.ca.post("/api/v1/report-codes", json_body=body), 409, "duplicate_report_no")
    # Keys are per institution: B may use the same key string for its own request.
    r = env.cb.post("/api/v1/report-codes", json_body={**body, "project_id": env.project_b},
                    idempotency_key="req-40")
    assert r.status_code == 201 and r.json()["code"] != r1.json()["code"]
    problem(env.ca.post("/api/v1/report-codes", json_body=body, idempotency_key="bad key"),
            422, "invalid_idempotency_key")
    with env.state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ReportCode)
                        .where(ReportCode.report_no == "BG-40")) == 2


def test_concurrent_retries_with_one_key_do_the_work_once(env: Env) -> None:
    body = {"report_no": "BG-50", "project_id": env.project_a}
    answers: list[tuple[int, str]] = []

    def go() -> None:
        r = env.ca.post("/api/v1/report-codes", json_body=body, idempotency_key="same")
        answers.append((r.status_code, r.text))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a[0] for a in answers} == {201}, answers
    assert len({a[1] for a in answers}) == 1
    with env.state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ReportCode)
                        .where(ReportCode.report_no == "BG-50")) == 1
        assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 1


def test_idempotent_put_and_void(env: Env) -> None:
    code = issue(env, "BG-60")
    sample = seed_record(env.state, env.a.institution or "", "sample", parents=[env.project_a])
    meta = {"conclusion": "pass", "issued_on": "2026-11-20", "approver": "x", "parents": [sample]}
    r1 = env.ca.put(f"/api/v1/reports/{code}", json_body=meta, idempotency_key="m1")
    r2 = env.ca.put(f"/api/v1/reports/{code}", json_body=meta, idempotency_key="m1")
    assert r1.json() == r2.json()
    v = {"report_no": "BG-61", "reason": "x"}
    assert env.ca.post("/api/v1/numbering/voids", json_body=v, idempotency_key="v1").json() == \
        env.ca.post("/api/v1/numbering/voids", json_body=v, idempotency_key="v1").json()
    with env.state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(NumberingVoid)) == 1


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "malformed_json"),
        (b'{"report_no": 5, "project_id": "x"}', "validation_error"),
        (b'{"report_no": ["a"], "project_id": "x"}', "validation_error"),
        (b'{"report_no": "a"}', "validation_error"),
        (b'{"report_no": "a", "project_id": "x", "extra": 1}', "unknown_field"),
        (b"[]", "validation_error"),
        (b"null", "validation_error"),
        (b'{"report_no": "\\u0000", "project_id": "x"}', "invalid_report_no"),
        (b'{"report_no": "' + b"9" * 65 + b'", "project_id": "x"}', "validation_error"),
        (b"\xff\xfe", "malformed_json"),
    ],
)
def test_bad_input_gets_stable_4xx(env: Env, content: bytes, code: str) -> None:
    r = env.ca.post("/api/v1/report-codes", content=content, content_type="application/json")
    assert 400 <= r.status_code < 500
    problem(r, r.status_code, code)


def test_bad_input_on_other_routes(env: Env) -> None:
    code = issue(env, "BG-70")
    for body in ({"conclusion": "maybe", "issued_on": "2026-11-20", "approver": "x",
                  "parents": ["a"]},
                 {"conclusion": "pass", "issued_on": "20/11/2026", "approver": "x",
                  "parents": ["a"]},
                 {"conclusion": "pass", "issued_on": "2026-11-20", "approver": "x",
                  "parents": []},
                 {"conclusion": "pass", "issued_on": "2026-11-20", "approver": "x",
                  "parents": "a"}):
        problem(env.ca.put(f"/api/v1/reports/{code}", json_body=body), 422, "validation_error")
    problem(env.ca.post(f"/api/v1/reports/{code}/revocation", json_body={"reason": ""}),
            422, "validation_error")
    problem(env.ca.post("/api/v1/numbering/voids",
                        json_body={"report_no": "x", "reason": "y", "year": 1999}),
            422, "validation_error")
    problem(env.ca.post("/api/v1/numbering/voids",
                        json_body={"report_no": "x", "reason": "y", "year": china_year() + 1}),
            422, "invalid_year")
    problem(env.cz.get("/api/v1/audit/numbering", query={"institution": env.a.institution,
                                                          "year": "abc"}),
            422, "validation_error")
    problem(env.ca.get("/api/v1/reports/" + "X" * 70), 422, "validation_error")


def test_oversized_body_is_413_before_reading(env: Env) -> None:
    big = b'{"report_no": "' + b"x" * 10_000 + b'", "project_id": "x"}'
    r = env.ca.post("/api/v1/report-codes", content=big, content_type="application/json")
    problem(r, 413, "body_too_large")
