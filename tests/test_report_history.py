"""A report commits to its whole history (issue 12, INTERFACE §7.1-§7.2), through the API.

- a second test record of a sample for the same item must correct or be a retest (409);
- the report record's `history` holds every record of its cited samples, written by the
  platform (a lab sending one gets 422);
- custody gaps and failed seal checks are warnings, in the metadata answer and the audit
  list; a failed seal check also goes to the agency;
- test plans on time and late (working days, with a holiday), on-site tests with and
  without a plan.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from service.clock import CHINA_TZ, utc_now
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Notification, Record
from tests.labkit import add_auditor, add_lab, client_for, make_app
from tests.recordkit import (
    Chain,
    ago,
    build_chain,
    commission_body,
    created,
    data_body,
    post_media,
    receipt_body,
    sample_body,
    specimen_photo,
)

META = {"conclusion": "pass", "approver": "王五"}


def _meta(*parents: str) -> dict[str, Any]:
    return {**META, "issued_on": utc_now().date().isoformat(), "parents": list(parents)}


def _record(state: ServiceState, record_id: str) -> dict[str, Any]:
    with session_scope(state.sessions) as s:
        row = s.get(Record, record_id)
        assert row is not None
        obj: dict[str, Any] = json.loads(row.canonical)
        obj["_leaf"] = row.leaf_hash
        return obj


def _codes(answer: dict[str, Any]) -> list[str]:
    return [w["code"] for w in answer["warnings"]]


def test_the_cherry_pick_is_refused_or_shown(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 121)
    with client_for(app, lab) as c:
        chain = build_chain(c, sample_code="YP-PICK-1")
        failing = created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(400), results={"strength_MPa": 18.2})))
        # a second, passing record without corrects or a reason would replace the first
        again = c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(300), results={"strength_MPa": 36.1}))
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "test_record_exists"
        assert again.json()["existing"] == failing
        # said to be a separate test (复检): accepted
        passing = created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(300), results={"strength_MPa": 36.1}, retest_reason="复检：首次试块破损")))
        # another item of the same sample is not a replacement
        created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(200), test_item="混凝土劈裂抗拉强度", results={"MPa": 3.1})))
        code = c.issue_code("BG-PICK-1", chain.project).json()["code"]
        answer = c.put(f"/api/v1/reports/{code}", json_body=_meta(chain.sample, passing))
        assert answer.status_code == 200, answer.text
        data = answer.json()
        uncited = [w for w in data["warnings"] if w["code"] == "test_record_uncited"]
        assert sorted(w["record_id"] for w in uncited) == sorted(
            [failing, _other_item(app_state, chain, failing, passing)]
        )
        assert data["evidence_complete"] is True  # custody complete; uncited is a warning
        history = _record(app_state, data["record_id"])["body"]["history"]
        sample_leaf = _record(app_state, chain.sample)["_leaf"]
        assert _record(app_state, failing)["_leaf"] in history[sample_leaf]
        assert _record(app_state, passing)["_leaf"] in history[sample_leaf]


def _other_item(state: ServiceState, chain: Chain, *known: str) -> str:
    with session_scope(state.sessions) as s:
        rows = s.scalars(select(Record).where(Record.type == "test_record")).all()
        for row in rows:
            body = json.loads(row.canonical)["body"]
            if row.id not in known and body["test_item"] == "混凝土劈裂抗拉强度":
                return row.id
    raise AssertionError("no other test record")


def test_history_holds_every_record_of_every_cited_sample(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 122)
    with client_for(app, lab) as c:
        a = build_chain(c, sample_code="YP-HIST-A")
        b = build_chain(c, sample_code="YP-HIST-B")
        unrelated = build_chain(c, sample_code="YP-HIST-C")
        a1 = created(c.post("/api/v1/test-records", json_body=data_body(a, ago(500))))
        a2 = created(c.post("/api/v1/test-records", json_body=data_body(
            a, ago(450), corrects=a1, correction_reason="录入错误", parents=[a.sample, a1])))
        b1 = created(c.post("/api/v1/test-records", json_body=data_body(b, ago(400))))
        b2 = created(c.post("/api/v1/test-records", json_body=data_body(
            b, ago(350), retest_reason="复检")))
        created(c.post("/api/v1/test-records", json_body=data_body(unrelated, ago(300))))
        # b's project: the report cites both samples of the same project? build_chain makes
        # a project per chain, so issue the code on a's project and cite a only, then b only
        code_a = c.issue_code("BG-HIST-A", a.project).json()["code"]
        ra = c.put(f"/api/v1/reports/{code_a}", json_body=_meta(a.sample, a2))
        assert ra.status_code == 200, ra.text
        code_b = c.issue_code("BG-HIST-B", b.project).json()["code"]
        # citing only the test record: its sample counts as cited all the same
        rb = c.put(f"/api/v1/reports/{code_b}", json_body=_meta(b1, b2))
        assert rb.status_code == 200, rb.text
        # the lab cannot write the history itself
        sent = c.put(f"/api/v1/reports/{code_b}", json_body={**_meta(b1, b2), "history": {}})
        assert sent.status_code == 422 and sent.json()["code"] == "history_not_allowed"

    def leaves(*ids: str) -> list[str]:
        return sorted(_record(app_state, i)["_leaf"] for i in ids)

    hist_a = _record(app_state, ra.json()["record_id"])["body"]["history"]
    assert hist_a == {
        _record(app_state, a.sample)["_leaf"]: leaves(a.seal, a.witness, a.receipt, a1, a2)
    }
    hist_b = _record(app_state, rb.json()["record_id"])["body"]["history"]
    assert hist_b == {
        _record(app_state, b.sample)["_leaf"]: leaves(b.seal, b.witness, b.receipt, b1, b2)
    }
    assert ra.json()["warnings"] == [] and ra.json()["evidence_complete"] is True


def _bare_sample(c: Any, chain: Chain, code: str, **over: Any) -> str:
    """Another sample of the chain's commission, with no seal, witness record or receipt."""
    return created(c.post("/api/v1/samples", json_body={**sample_body(chain.commission, code),
                                                         **over}))


def test_custody_gaps_and_failed_seal_checks_are_warnings(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 123)
    auditor = add_auditor(app_state, "市质监站")
    with client_for(app, lab) as c:
        chain = build_chain(c, sample_code="YP-CUST-1")
        bare = _bare_sample(c, chain, "YP-CUST-2")
        bare_test = created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(300), parents=[bare])))
        code = c.issue_code("BG-CUST-1", chain.project).json()["code"]
        answer = c.put(f"/api/v1/reports/{code}", json_body=_meta(bare, bare_test)).json()
        assert _codes(answer) == [
            "custody_seal_missing", "custody_witness_missing", "custody_receipt_missing"
        ]
        assert {w["record_id"] for w in answer["warnings"]} == {bare}
        assert answer["evidence_complete"] is False
        # a sample not taken under witness needs none of them
        free = _bare_sample(c, chain, "YP-CUST-3", under_witness=False)
        free_test = created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(300), parents=[free])))
        code2 = c.issue_code("BG-CUST-2", chain.project).json()["code"]
        answer2 = c.put(f"/api/v1/reports/{code2}", json_body=_meta(free, free_test)).json()
        assert answer2["warnings"] == [] and answer2["evidence_complete"] is True
        # a receipt that found the seal broken
        broken = c.post("/api/v1/receipts", json_body=receipt_body(chain, seal_intact=False))
        assert broken.status_code == 201 and broken.json()["seal_check"]["result"] == "fail"
        test = created(c.post("/api/v1/test-records", json_body=data_body(chain, ago(200))))
        code3 = c.issue_code("BG-CUST-3", chain.project).json()["code"]
        answer3 = c.put(f"/api/v1/reports/{code3}", json_body=_meta(chain.sample, test)).json()
        assert _codes(answer3) == ["seal_check_failed"]
        assert answer3["warnings"][0]["record_id"] == broken.json()["record_id"]
        assert answer3["evidence_complete"] is False
    with session_scope(app_state.sessions) as s:
        notes = s.scalars(select(Notification).where(Notification.kind == "seal_check_failed"))
        payloads = [json.loads(n.payload) for n in notes]
    assert [p["receipt_record_id"] for p in payloads] == [broken.json()["record_id"]]
    assert payloads[0]["agency_region"] == "440305" and payloads[0]["sample_code"] == "YP-CUST-1"
    # the audit list, filtered
    with client_for(app, auditor) as a:
        every = a.get("/api/v1/audit/warnings").json()
        assert sorted(w["code"] for w in every) == sorted(
            ["custody_seal_missing", "custody_witness_missing", "custody_receipt_missing",
             "seal_check_failed"]
        )
        only = a.get("/api/v1/audit/warnings", query={"code": "seal_check_failed"}).json()
        assert [w["report_code"] for w in only] == [code3]
        assert a.get("/api/v1/audit/warnings", query={"region": "440300"}).json() == every
        assert a.get("/api/v1/audit/warnings", query={"region": "110000"}).json() == []
        today = datetime.now(CHINA_TZ).date()
        tomorrow = (today + timedelta(days=1)).isoformat()
        assert a.get("/api/v1/audit/warnings", query={"since": tomorrow}).json() == []
        assert len(a.get("/api/v1/audit/warnings", query={"until": today.isoformat()}).json()) == 4
        page = a.get("/api/v1/audit/warnings", query={"limit": "2"}).json()
        rest = a.get("/api/v1/audit/warnings", query={"after": str(page[-1]["id"])}).json()
        assert [w["id"] for w in page + rest] == [w["id"] for w in every]
        assert a.get("/api/v1/audit/warnings", query={"institution": lab.institution}).json()
    regional = add_auditor_in(app_state, "110000")
    with client_for(app, regional) as r:
        assert r.get("/api/v1/audit/warnings").json() == []
        assert r.get("/api/v1/audit/warnings", query={"region": "440300"}).status_code == 403
    with client_for(app, lab) as c:
        assert len(c.get("/api/v1/warnings").json()) == 4


def add_auditor_in(state: ServiceState, region: str) -> Any:
    from service.domain import accounts
    from tests.labkit import Account

    with session_scope(state.sessions) as s:
        out = accounts.add_auditor(s, state.settings, name="北京", region=region)
    return Account(out["key_id"], out["secret"], auditor_id=out["auditor"])


def _plan(contract: str, start: datetime, **over: Any) -> dict[str, Any]:
    return {
        "plan_no": "FA-2026-0031",
        "kind": "pile_test",
        "items": [{"name": "单桩竖向抗压静载试验", "standard": "JGJ 106-2014"}],
        "location": "3号楼 桩基 P1-P40",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(days=2)).isoformat(),
        "parents": [contract],
        **over,
    }


def test_test_plans_on_time_and_late_with_the_holiday_calendar(
    tmp_path: Any, db_url: str
) -> None:
    from service.state import build_state
    from tests.fixtures.db import make_settings

    today = datetime.now(CHINA_TZ).date()
    # the second working day from today is a public holiday (not a working day)
    holiday = _next_working_day(today, 2)
    state = build_state(
        make_settings(tmp_path, db_url, rules={"holidays": [holiday.isoformat()]}), chain=None
    )
    lab = add_lab(state, 124)
    try:
        with client_for(make_app(state), lab) as c:
            chain = build_chain(c, sample_code="YP-PLAN-1")
            # 3 working days' notice once the holiday is skipped: on time
            on_day = _start(_next_working_day(today, 3, skip=(holiday,)))
            on_time = c.post("/api/v1/test-plans", json_body=_plan(chain.contract, on_day))
            assert on_time.status_code == 201 and on_time.json()["flags"] == [], on_time.text
            # 3 weekdays out, but one of them is the holiday: 2 working days' notice, late
            start = _start(_next_working_day(today, 3))
            late = c.post("/api/v1/test-plans", json_body=_plan(chain.contract, start))
            assert late.status_code == 201
            flags = late.json()["flags"]
            assert [f["rule"] for f in flags] == ["test_plan_late"]
            assert flags[0]["notice_working_days"] == 2 and flags[0]["limit_working_days"] == 3
    finally:
        state.close()


def _next_working_day(start: date, n: int, skip: tuple[date, ...] | None = None) -> date:
    """The n-th working day after `start` (weekends off; `skip` holidays)."""
    day, left = start, n
    while left:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in (skip or ()):
            left -= 1
    return day


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=CHINA_TZ)


def test_onsite_tests_with_and_without_a_plan(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 125)
    with client_for(app, lab) as c:
        chain = build_chain(c, sample_code="YP-SITE-1")
        plan = created(c.post("/api/v1/test-plans", json_body=_plan(
            chain.contract, datetime.now(CHINA_TZ) + timedelta(days=20))))
        photo = post_media(c, specimen_photo("P17"))
        site = {"description": "3号楼 桩 P17", "latitude": 22.5431, "longitude": 113.9365}

        def onsite(parents: list[str], **over: Any) -> Any:
            body = data_body(chain, ago(120), test_item="单桩竖向抗压静载试验", site=site,
                             parents=parents, **over)
            return c.post("/api/v1/test-records", json_body=body)

        with_plan = onsite([plan, photo])
        assert with_plan.status_code == 201, with_plan.text
        assert with_plan.json()["flags"] == []
        without = onsite([chain.project, photo])
        assert without.status_code == 201, without.text
        assert [f["rule"] for f in without.json()["flags"]] == ["onsite_without_plan"]
        # key images are required, and an on-site test tests no sample
        no_image = onsite([plan])
        assert no_image.status_code == 422 and no_image.json()["code"] == "image_required"
        on_sample = onsite([chain.sample, photo])
        assert on_sample.status_code == 422
        neither = onsite([photo])
        assert neither.status_code == 422 and neither.json()["code"] == "parent_required"
        # a laboratory test record cannot rest on a plan
        lab_on_plan = c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(60), parents=[chain.sample, plan], retest_reason="x"))
        assert lab_on_plan.status_code == 422
        assert lab_on_plan.json()["code"] == "parent_type_invalid"
        # a report on the on-site test without a plan carries its warning
        code = c.issue_code("BG-SITE-1", chain.project).json()["code"]
        answer = c.put(f"/api/v1/reports/{code}",
                       json_body=_meta(without.json()["record_id"])).json()
        assert _codes(answer) == ["onsite_without_plan"]


def test_commission_not_under_witness(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 126)
    with client_for(app, lab) as c:
        chain = build_chain(c, sample_code="YP-COMM-1")
        commission = created(c.post("/api/v1/commissions", json_body={
            **commission_body(chain.contract), "under_witness": False}))
        sample = created(c.post("/api/v1/samples", json_body=sample_body(commission, "YP-COMM-2")))
        test = created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(100), parents=[sample])))
        code = c.issue_code("BG-COMM-1", chain.project).json()["code"]
        answer = c.put(f"/api/v1/reports/{code}", json_body=_meta(sample, test)).json()
        assert answer["warnings"] == [] and answer["evidence_complete"] is True
