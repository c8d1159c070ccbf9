"""R10: test data changes only through a recorded correction: same sample, one line of
history, reports cite the latest version, and the page says why it was corrected."""

from __future__ import annotations

from service.clock import utc_now
from service.state import ServiceState
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import ago, build_chain, created, data_body


def test_corrections_form_one_reviewable_line(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 81)
    with client_for(app, lab) as c:
        chain = build_chain(c, sample_code="YP-CORR-1", finished_at=ago(600))
        first = chain.test_record

        def correct(target: str, reason: str | None = "荷载读数录入错误", **over: object):
            body = data_body(
                chain,
                ago(300),
                corrects=target,
                correction_reason=reason,
                parents=[chain.sample, target],
                results={"strength_MPa": 35.4},
            )
            body.update(over)
            return c.post("/api/v1/test-records", json_body=body)

        second = created(correct(first))
        # the corrected record cannot be corrected again: correct the latest one
        again = correct(first)
        assert again.status_code == 409 and again.json()["code"] == "already_corrected"
        assert again.json()["corrected_by"] == second
        third = created(correct(second, reason="复核后更正"))
        # a correction names the reason, and a sample of the record it corrects
        no_reason = correct(third, reason=None)
        assert no_reason.status_code == 422
        other = build_chain(c, sample_code="YP-CORR-2")
        wrong = correct(third, parents=[other.sample, third])
        assert wrong.status_code == 422 and wrong.json()["code"] == "correction_sample_mismatch"
        # corrects must be one of the parents, and a test record
        stray = correct(third, parents=[chain.sample])
        assert stray.status_code == 422 and stray.json()["code"] == "parent_required"

        # reports cite the latest version only
        code = c.issue_code("BG-CORR-1", chain.project).json()["code"]
        meta = {"conclusion": "pass", "issued_on": utc_now().date().isoformat(),
                "approver": "王五"}
        for stale, fixed in ((first, second), (second, third)):
            r = c.put(f"/api/v1/reports/{code}",
                      json_body={**meta, "parents": [chain.sample, stale]})
            assert r.status_code == 422 and r.json()["code"] == "test_record_corrected"
            assert r.json()["corrected_by"] == fixed
        r = c.put(f"/api/v1/reports/{code}", json_body={**meta, "parents": [chain.sample, third]})
        assert r.status_code == 200, r.text

        # the public chain shows all three versions, the corrections with their reasons
        view = c.http.get(f"/api/v1/public/reports/{code}").json()
        tests = {s["record_id"]: s for s in view["chain"] if s["type"] == "test_record"}
        assert set(tests) == {first, second, third}
        assert tests[second]["details"]["correction_reason"] == "荷载读数录入错误"
        assert tests[third]["details"]["correction_reason"] == "复核后更正"
        assert "correction_reason" not in tests[first]["details"]
        assert "更正原因" in c.http.get(f"/v/{code}").text


def test_racing_corrections_leave_one_line(app_state: ServiceState) -> None:
    """Two corrections of the same record at once: one is accepted, the other told which
    record corrected it first (409), on SQLite as on PostgreSQL (the database's key)."""
    import threading

    from service.domain.records import correction_of
    from service.storage.db import session_scope

    app = make_app(app_state)
    lab = add_lab(app_state, 82)
    with client_for(app, lab) as setup:
        chain = build_chain(setup, sample_code="YP-RACE", finished_at=ago(600))
    target = chain.test_record
    for round_ in range(3):
        answers: list[tuple[int, str | None]] = []
        start = threading.Barrier(2)

        def send(reason: str, target: str = target, start: threading.Barrier = start,
                 answers: list[tuple[int, str | None]] = answers) -> None:
            with client_for(app, lab) as c:
                body = data_body(chain, ago(60), corrects=target, correction_reason=reason,
                                 parents=[chain.sample, target])
                start.wait()
                r = c.post("/api/v1/test-records", json_body=body)
                answers.append((r.status_code, r.json().get("corrected_by")))

        threads = [threading.Thread(target=send, args=(f"更正 {round_}-{i}",)) for i in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(a[0] for a in answers) == [201, 409], answers
        with session_scope(app_state.sessions) as s:
            winner = correction_of(s, target)
        assert winner is not None
        assert [by for status, by in answers if status == 409] == [winner]
        target = winner  # the next round corrects the latest version
