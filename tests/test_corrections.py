"""R10: test data changes only through a recorded correction: same sample, one line of
history, reports cite the latest version, and the page says why it was corrected."""

from __future__ import annotations

from service.app import AppState
from service.domain.evidence import utc_now
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import ago, build_chain, created, data_body


def test_corrections_form_one_reviewable_line(app_state: AppState) -> None:
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
