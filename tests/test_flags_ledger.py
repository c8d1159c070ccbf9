"""Late-upload flags (R11, R13) and the nonconforming ledger with webhook delivery (R12)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from service.client import JianzhengClient
from service.domain.nonconforming import record_nonconforming
from service.domain.notify import WebhookNotifier, deliver_due
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from service.storage.models import NonconformingEntry, Notification
from tests.fixtures.clock import ShiftedClock
from tests.fixtures.db import make_settings
from tests.labkit import add_agency, add_auditor, add_lab, client_for, make_app, seed_report
from tests.recordkit import (
    TINY_PDF,
    ago,
    build_chain,
    contract_meta,
    created,
    data_body,
    multipart,
    project_body,
    today_cst,
)


def test_late_contract_and_test_data_are_flagged(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab_a, lab_b, aud = add_lab(app_state, 11), add_lab(app_state, 12), add_auditor(app_state)
    with client_for(app, lab_a) as a, client_for(app, lab_b) as b, client_for(app, aud) as au, \
            client_for(app, add_agency(app_state)) as ag:
        chain = build_chain(a, agency=ag)  # contract signed today: on time
        # signed 30 days ago: far more than 5 working days
        body, ctype = multipart(
            contract_meta(chain.project, today_cst(30), contract_no="HT-LATE"), TINY_PDF,
            "application/pdf",
        )
        late = a.post("/api/v1/contracts", content=body, content_type=ctype)
        assert late.status_code == 201
        assert [f["rule"] for f in late.json()["flags"]] == ["contract_late"]
        assert late.json()["flags"][0]["working_days"] > 5
        # auto-acquired data an hour after the test finished: late; manual: on time
        auto = a.post("/api/v1/test-records", json_body=data_body(chain, ago(3600)))
        # (separate tests of the same item say so: retest_reason, R23)
        manual = a.post(
            "/api/v1/test-records",
            json_body=data_body(chain, ago(3600), acquisition="manual", retest_reason="复检"),
        )
        prompt = a.post(
            "/api/v1/test-records", json_body=data_body(chain, ago(30), retest_reason="复检")
        )
        assert [f["rule"] for f in auto.json()["flags"]] == ["test_data_late"]
        assert manual.json()["flags"] == [] and prompt.json()["flags"] == []
        # the flag is inside the anchored record, not only beside it
        stored = a.get(f"/api/v1/records/{late.json()['record_id']}").json()
        assert stored["record"]["body"]["flags"] == late.json()["flags"]
        assert stored["flags"] == late.json()["flags"]
        # auditors query them, per rule and institution
        all_flags = au.get("/api/v1/audit/flags").json()
        assert {(f["record_id"], f["rule"]) for f in all_flags} == {
            (late.json()["record_id"], "contract_late"),
            (auto.json()["record_id"], "test_data_late"),
        }
        only = au.get("/api/v1/audit/flags", query={"rule": "test_data_late"}).json()
        assert [f["record_id"] for f in only] == [auto.json()["record_id"]]
        other = au.get("/api/v1/audit/flags", query={"institution": lab_b.institution}).json()
        assert other == []
        assert len(a.get("/api/v1/flags").json()) == 2
        assert b.get("/api/v1/flags").json() == []
        assert au.get("/api/v1/audit/flags", query={"limit": "0"}).status_code == 422


def test_calendar_comes_from_settings(tmp_path: Path, db_url: str) -> None:
    """Three days after signing is on time by default, late with a 1-day limit."""
    strict = make_settings(
        tmp_path, db_url, rules={"contract_upload_working_days": 1, "weekend_days": []}
    )
    state = build_state(strict, chain=None)
    try:
        lab = add_lab(state, 13)
        with client_for(make_app(state), lab) as a:
            project = created(a.post("/api/v1/projects", json_body=project_body()))
            body, ctype = multipart(
                contract_meta(project, today_cst(3)), TINY_PDF, "application/pdf"
            )
            resp = a.post("/api/v1/contracts", content=body, content_type=ctype)
            assert resp.json()["flags"][0]["working_days"] == 3
            assert resp.json()["flags"][0]["limit_working_days"] == 1
    finally:
        state.engine.dispose()


class _Hook:
    """A local webhook receiver that fails the first `fail_first` requests."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 503 if len(hook.requests) <= hook.fail_first else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    h = _Hook(fail_first=2)
    yield h
    h.close()


def _deliver_past_backoffs(
    state: ServiceState, clock: ShiftedClock, hook: _Hook, requests: int
) -> None:
    """Let the delivery loop make `requests` attempts, moving the service's clock past each
    retry's backoff once the failed attempt is recorded (instead of waiting it out)."""
    recorded = 0
    deadline = time.monotonic() + 20
    while len(hook.requests) < requests:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(hook.requests)} of {requests} webhook requests within 20 s")
        with state.sessions() as s:
            attempts = s.scalar(select(func.max(Notification.attempts))) or 0
        if attempts > recorded:  # a refusal is recorded with its next attempt time
            recorded = attempts
            clock.advance(180)  # past the longest backoff (retry_max_s)
        time.sleep(0.02)


def test_fail_enters_ledger_and_webhook_is_delivered_after_retries(
    tmp_path: Path, db_url: str, hook: _Hook
) -> None:
    settings = make_settings(
        tmp_path,
        db_url,
        notify={
            "webhook_url": hook.url,
            "webhook_secret": "agency-secret",
            "retry_initial_s": 60,
            "retry_max_s": 120,
            "poll_interval_s": 0.05,
        },
    )
    clock = ShiftedClock()
    state = build_state(settings, chain=None, clock=clock)
    try:
        lab, aud = add_lab(state, 21), add_auditor(state)
        report = seed_report(state, lab.institution or "", "JZ0001")
        with session_scope(state.sessions) as s:
            entry = record_nonconforming(
                s, report, lab.institution or "", "JZ0001",
                {"conclusion": "fail", "items": ["混凝土抗压强度"]},
            )
            again = record_nonconforming(s, report, lab.institution or "", "JZ0001", {})
            assert again is entry
        with session_scope(state.sessions) as s:
            assert s.scalar(select(func.count()).select_from(NonconformingEntry)) == 1
            assert s.scalar(select(func.count()).select_from(Notification)) == 1
        app = make_app(state)
        with TestClient(app) as tc:  # runs the lifespan: the delivery loop starts
            _deliver_past_backoffs(state, clock, hook, 3)
            time.sleep(0.2)
            auditor = JianzhengClient(
                "http://testserver", aud.key_id, aud.secret, http=tc, clock=clock.time
            )
            ledger = auditor.get("/api/v1/audit/nonconforming").json()
        assert len(hook.requests) == 3  # two refusals, then accepted; nothing after
        ids = {h["x-jz-notification-id"] for h, _ in hook.requests}
        assert len(ids) == 1
        headers, body = hook.requests[-1]
        assert headers["x-jz-event"] == "nonconforming_result"
        expected_sig = hmac.new(b"agency-secret", body, hashlib.sha256).hexdigest()
        assert headers["x-jz-webhook-signature"] == expected_sig
        event = json.loads(body)
        assert event["report_code"] == "JZ0001"
        assert event["report_leaf_hash"] == report.leaf_hash
        assert event["institution"] == lab.institution
        assert event["region"] == "440300"
        assert event["details"]["items"] == ["混凝土抗压强度"]
        assert len(ledger) == 1
        assert ledger[0]["code"] == "JZ0001"
        assert ledger[0]["notification"]["status"] == "delivered"
        assert ledger[0]["notification"]["attempts"] == 3
    finally:
        state.engine.dispose()


def test_undeliverable_notification_fails_after_max_attempts(
    tmp_path: Path, db_url: str
) -> None:
    hook = _Hook(fail_first=100)
    settings = make_settings(
        tmp_path, db_url,
        notify={"webhook_url": hook.url, "max_attempts": 3, "retry_initial_s": 10},
    )
    state = build_state(settings, chain=None)
    notifier = WebhookNotifier(hook.url)
    try:
        lab = add_lab(state, 22)
        report = seed_report(state, lab.institution or "", "JZ0002")
        with session_scope(state.sessions) as s:
            record_nonconforming(s, report, lab.institution or "", "JZ0002", {})
        t = time.time()
        assert deliver_due(state.sessions, notifier, settings.notify, now=t) == 0
        # not due again before the backoff has passed
        assert deliver_due(state.sessions, notifier, settings.notify, now=t + 1) == 0
        assert len(hook.requests) == 1
        deliver_due(state.sessions, notifier, settings.notify, now=t + 3600)
        deliver_due(state.sessions, notifier, settings.notify, now=t + 7200)
        deliver_due(state.sessions, notifier, settings.notify, now=t + 9000)
        assert len(hook.requests) == 3
        with session_scope(state.sessions) as s:
            row = s.scalars(select(Notification)).one()
            assert (row.status, row.attempts, row.last_error) == ("failed", 3, "HTTP 503")
    finally:
        notifier.close()
        hook.close()
        state.engine.dispose()


def test_failed_report_through_the_api_enters_the_ledger(
    tmp_path: Path, db_url: str, hook: _Hook
) -> None:
    """PUT /api/v1/reports/{code} with `fail` → ledger entry → webhook (after 2 refusals)."""
    hook.fail_first = 2
    settings = make_settings(
        tmp_path, db_url,
        notify={
            "webhook_url": hook.url, "retry_initial_s": 60, "retry_max_s": 120,
            "poll_interval_s": 0.05,
        },
    )
    clock = ShiftedClock()
    state = build_state(settings, chain=None, clock=clock)
    try:
        lab, lab_b, aud = add_lab(state, 23), add_lab(state, 24), add_auditor(state)
        agency = add_agency(state)
        app = make_app(state)
        with TestClient(app) as tc:
            a, b, au, ag = (
                JianzhengClient("http://testserver", k.key_id, k.secret, http=tc, clock=clock.time)
                for k in (lab, lab_b, aud, agency)
            )
            # the agency vouches for the chain's witness, device and tester: no registry
            # warning, so the webhook hears of the failed result only
            chain = build_chain(a, finished_at=ago(60), agency=ag)
            issued = a.issue_code("BG-2026-000001", chain.project)
            assert issued.status_code == 201, issued.text
            code = issued.json()["code"]
            meta = {
                "conclusion": "fail",
                "issued_on": today_cst(),
                "approver": "张三",
                "parents": [chain.sample, chain.test_record],
            }
            resp = a.put(f"/api/v1/reports/{code}", json_body=meta)
            assert resp.status_code == 200, resp.text
            report_record = resp.json()["record_id"]
            _deliver_past_backoffs(state, clock, hook, 3)
            time.sleep(0.2)
            mine = a.get("/api/v1/nonconforming").json()
            assert b.get("/api/v1/nonconforming").json() == []
            audited = au.get("/api/v1/audit/nonconforming").json()
        assert [e["report_record_id"] for e in mine] == [report_record]
        assert audited[0]["notification"]["status"] == "delivered"
        assert len(hook.requests) == 3
        event = json.loads(hook.requests[-1][1])
        assert (event["report_code"], event["details"]["conclusion"]) == (code, "fail")
    finally:
        state.engine.dispose()


def test_notification_names_the_projects_local_agency(app_state: ServiceState) -> None:
    """R12: the agency to notify is the project's (属地), which may differ from the lab's
    region: the event carries the project's region and agency for routing."""
    app = make_app(app_state)
    lab = add_lab(app_state, 23)  # a lab registered in 440300
    with client_for(app, lab) as c:
        chain = build_chain(
            c,
            sample_code="YP-AGENCY",
            finished_at=ago(60),
            project_fields={
                "region": "440306",
                "supervision_agency": "宝安区建设工程质量安全监督站",
            },
        )
        project = chain.project
        code = c.issue_code("BG-AGENCY-1", project).json()["code"]
        r = c.put(
            f"/api/v1/reports/{code}",
            json_body={
                "conclusion": "fail",
                "issued_on": "2026-11-20",
                "approver": "王五",
                "parents": [chain.sample, chain.test_record],
            },
        )
        assert r.status_code == 200 and r.json()["nonconforming"] is True
    with session_scope(app_state.sessions) as s:
        payloads = [json.loads(n.payload) for n in s.scalars(
            select(Notification).where(Notification.kind == "nonconforming_result"))]
    assert len(payloads) == 1
    event = payloads[0]
    assert event["report_code"] == code
    assert event["region"] == "440300"  # the lab's
    assert event["agency_region"] == "440306"  # the project's: where to route
    assert event["project"] == {
        "record_id": project,
        "name": "深圳湾科技园3号楼",
        "project_no": None,
        "region": "440306",
        "supervision_agency": "宝安区建设工程质量安全监督站",
    }
