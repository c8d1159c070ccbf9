"""R13: samples whose receipt or test data never arrived are listed for the lab and for
auditors; received-and-refused samples and samples with test data are not (SQLite and
PostgreSQL)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from service.clock import utc_now
from service.domain.overdue import find_overdue
from service.settings import RulesSettings
from service.state import build_state
from service.storage.db import session_scope
from tests.fixtures.clock import ShiftedClock
from tests.fixtures.db import make_settings
from tests.labkit import add_auditor, add_lab, client_for, make_app
from tests.recordkit import (
    ago,
    build_chain,
    created,
    receipt_body,
    sample_body,
    seal_body,
)

DUE_DAYS = 60 / 86400  # one minute


def test_overdue_samples(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(
        tmp_path, db_url, rules={"receipt_due_days": DUE_DAYS, "test_data_due_days": DUE_DAYS}
    )
    state = build_state(settings, chain=None)
    state.clock = clock = ShiftedClock()
    try:
        app = make_app(state)
        lab_a, lab_b, auditor = add_lab(state, 71), add_lab(state, 72), add_auditor(state)
        with client_for(app, lab_a) as a, client_for(app, lab_b) as b, client_for(
            app, auditor
        ) as z:
            untested = build_chain(a, sample_code="YP-UNTESTED")  # received, no test record
            build_chain(a, sample_code="YP-TESTED", finished_at=ago(60))  # complete
            never = created(  # registered, never received
                a.post("/api/v1/samples", json_body=sample_body(untested.commission, "YP-NEVER"))
            )
            refused_sample = created(
                a.post("/api/v1/samples", json_body=sample_body(untested.commission, "YP-REFUSED"))
            )
            refused = dataclasses.replace(
                untested, sample=refused_sample, sample_code="YP-REFUSED", receipt=""
            )
            refused.seal = created(a.post("/api/v1/seals", json_body=seal_body(refused)))
            created(a.post("/api/v1/receipts", json_body=receipt_body(refused, accepted=False)))
            other = build_chain(b, sample_code="YP-B")  # lab B's, received, untested

            assert a.get("/api/v1/overdue").json() == []  # nothing is due yet
            clock.advance(120)  # past both deadlines, inside the signing window

            mine = a.get("/api/v1/overdue").json()
            assert {(i["kind"], i["sample_code"]) for i in mine} == {
                ("test_data", "YP-UNTESTED"),
                ("receipt", "YP-NEVER"),
            }
            by_code = {i["sample_code"]: i for i in mine}
            assert by_code["YP-NEVER"]["sample_record_id"] == never
            assert by_code["YP-NEVER"]["receipt_record_id"] is None
            assert by_code["YP-UNTESTED"]["sample_record_id"] == untested.sample
            assert by_code["YP-UNTESTED"]["receipt_record_id"] == untested.receipt
            assert all(i["days_waiting"] >= 0 and i["since"].endswith("Z") for i in mine)

            every = z.get("/api/v1/audit/overdue").json()
            assert {i["sample_code"] for i in every} == {"YP-UNTESTED", "YP-NEVER", "YP-B"}
            only_b = z.get("/api/v1/audit/overdue", query={"institution": lab_b.institution})
            assert [i["sample_record_id"] for i in only_b.json()] == [other.sample]
            assert a.get("/api/v1/audit/overdue").status_code == 403  # labs: own list only
            assert b.get("/api/v1/overdue").json()[0]["sample_code"] == "YP-B"

        # with the default deadlines (7 and 30 days) none of it is overdue yet
        with session_scope(state.sessions) as s:
            assert find_overdue(s, RulesSettings(), institution=None, now=utc_now(), limit=10) == []
    finally:
        state.engine.dispose()
