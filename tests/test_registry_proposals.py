"""Registry entries a lab proposes and its supervision agency approves (issue 13,
docs/registry.md "Proposals"), through the API:

- a lab proposes staff, a device and a qualification; nothing enters the registry while
  they wait (the device still flags `device_unregistered`, named test items pass);
- the agency of the lab's region lists the pending ones and approves: the same registry
  entry as its own registration (the same body, `action: "approve"`, the proposal named),
  in force at once; or rejects with a reason, and nothing is entered;
- an agency of another region gets 403 `out_of_region` and sees none; a lab and an
  auditor cannot approve; a decided proposal is 409 `proposal_decided`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import RegistryProposal
from tests.labkit import add_agency, add_auditor, add_lab, client_for, make_app
from tests.recordkit import (
    VALID_ID_NUMBER,
    ago,
    build_chain,
    created,
    data_body,
    stored_record,
)

STAFF = {"kind": "staff", "person": {"name": "李娜", "id_number": VALID_ID_NUMBER},
         "roles": ["approver"], "signing_scope": ["混凝土抗压强度"]}
DEVICE = {"kind": "device", "device": {"id": "YJ-2000-07", "name": "压力试验机"},
          "calibration": {"kind": "verification", "certificate_no": "JD2026-0815",
                          "valid_until": "2099-12-31"}}
QUALIFICATION = {"kind": "qualification",
                 "certificate": {"no": "粤建检字第0009号", "valid_until": "2099-12-31"},
                 "scope": [{"specialty": "建筑材料及构配件", "items": ["混凝土抗压强度"]}]}


def _without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


def test_a_lab_proposes_and_the_agency_of_its_region_approves(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 151)
    twin = add_lab(app_state, 152)  # the agency registers the same entries for it directly
    agency = add_agency(app_state)
    far_agency = add_agency(app_state, region="110000")
    auditor = add_auditor(app_state)
    inst = lab.institution or ""
    with client_for(app, lab) as c, client_for(app, agency) as a, client_for(
        app, far_agency
    ) as fa, client_for(app, auditor) as r:
        # checked as the agency's registration would be
        bad = c.post("/api/v1/registry-proposals", json_body={**STAFF, "roles": ["tester"]})
        assert bad.status_code == 422 and bad.json()["code"] == "signing_scope_invalid"
        bad_id = c.post("/api/v1/registry-proposals", json_body={
            **STAFF, "person": {"name": "李娜", "id_number": VALID_ID_NUMBER[:-1] + "1"}})
        assert bad_id.status_code == 422 and bad_id.json()["code"] == "id_number_invalid"
        unknown_kind = c.post("/api/v1/registry-proposals", json_body={**DEVICE, "kind": "x"})
        assert unknown_kind.status_code == 422
        assert a.post("/api/v1/registry-proposals", json_body=DEVICE).status_code == 403

        proposed = {}
        for body in (STAFF, DEVICE, QUALIFICATION):
            answer = c.post("/api/v1/registry-proposals", json_body=body)
            assert answer.status_code == 201, answer.text
            out = answer.json()
            assert out["status"] == "pending" and out["institution"] == inst
            assert out["record_id"] is None and out["kind"] == body["kind"]
            proposed[body["kind"]] = out["proposal_id"]
        assert c.get("/api/v1/registry-proposals").json()[0]["entry"]["person"][
            "id_number"] == "110***********002X"  # shown masked

        # pending: nothing is in the registry yet
        chain = build_chain(c, sample_code="YP-PROP-1")
        waiting = c.post("/api/v1/test-records", json_body=data_body(chain, ago(300)))
        assert "device_unregistered" in [f["rule"] for f in waiting.json()["flags"]]
        named = c.post("/api/v1/report-codes", json_body={
            "report_no": "BG-PROP-0", "project_id": chain.project,
            "test_items": ["混凝土劈裂抗拉强度"]})
        assert named.status_code == 201, named.text
        assert [e for e in a.get("/api/v1/audit/registry", query={"institution": inst}).json()
                if e["record"]["body"]["kind"] != "witness"] == []

        # the agency of the region lists them; another region's sees none, may not decide
        pending = a.get("/api/v1/agency/registry-proposals", query={"status": "pending"})
        assert pending.status_code == 200, pending.text
        assert [p["proposal_id"] for p in pending.json()] == [
            proposed["staff"], proposed["device"], proposed["qualification"]]
        assert fa.get("/api/v1/agency/registry-proposals").json() == []
        assert fa.get("/api/v1/agency/registry-proposals",
                      query={"institution": inst}).status_code == 403
        far = fa.post(f"/api/v1/agency/registry-proposals/{proposed['device']}/approval",
                      json_body={})
        assert far.status_code == 403 and far.json()["code"] == "out_of_region"
        far_no = fa.post(f"/api/v1/agency/registry-proposals/{proposed['device']}/rejection",
                         json_body={"reason": "不是本地区"})
        assert far_no.status_code == 403 and far_no.json()["code"] == "out_of_region"
        for other in (c, r):  # a lab cannot approve its own proposal, an auditor neither
            no = other.post(f"/api/v1/agency/registry-proposals/{proposed['device']}/approval",
                            json_body={})
            assert no.status_code == 403 and no.json()["code"] == "forbidden"
            assert other.get("/api/v1/agency/registry-proposals").status_code == 403

        # approved: the agency's own registration, naming the proposal, in force at once
        approved = {}
        for kind in ("staff", "device", "qualification"):
            answer = a.post(f"/api/v1/agency/registry-proposals/{proposed[kind]}/approval",
                            json_body={})
            assert answer.status_code == 201, answer.text
            out = answer.json()
            assert out["proposal"]["status"] == "approved"
            assert out["proposal"]["record_id"] == out["record_id"]
            assert out["proposal"]["decided_by"]["name"] == "监督站 440300"
            approved[kind] = stored_record(app_state, out["record_id"])
        direct = {
            "staff": a.post("/api/v1/agency/staff", json_body={
                **_without(STAFF, "kind"), "institution": twin.institution}),
            "device": a.post("/api/v1/agency/devices", json_body={
                **_without(DEVICE, "kind"), "institution": twin.institution}),
            "qualification": a.post("/api/v1/agency/qualifications", json_body={
                **_without(QUALIFICATION, "kind"), "institution": twin.institution}),
        }
        for kind, record in approved.items():
            assert record["type"] == "registry" and record["institution"] == inst
            body = record["body"]
            assert body["action"] == "approve" and body["proposal"]["id"] == proposed[kind]
            entered = stored_record(app_state, created(direct[kind]))["body"]
            assert entered["action"] == "register" and "proposal" not in entered
            assert _without(body, "action", "proposal") == _without(entered, "action")
        listed = [e["record"]["id"] for e in
                  a.get("/api/v1/audit/registry", query={"institution": inst}).json()]
        assert {approved[k]["id"] for k in approved} <= set(listed)
        now_known = c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(200), retest_reason="复检"))
        assert "device_unregistered" not in [f["rule"] for f in now_known.json()["flags"]]
        outside = c.post("/api/v1/report-codes", json_body={
            "report_no": "BG-PROP-1", "project_id": chain.project,
            "test_items": ["混凝土劈裂抗拉强度"]})
        assert outside.status_code == 422 and outside.json()["code"] == "out_of_scope"

        # decided once
        again = a.post(f"/api/v1/agency/registry-proposals/{proposed['device']}/approval",
                       json_body={})
        assert again.status_code == 409 and again.json()["code"] == "proposal_decided"
        late_no = a.post(f"/api/v1/agency/registry-proposals/{proposed['device']}/rejection",
                         json_body={"reason": "x"})
        assert late_no.status_code == 409 and late_no.json()["code"] == "proposal_decided"
        missing = a.post("/api/v1/agency/registry-proposals/01M8TE3RC3DNB43KYD7GNK4FJS/approval",
                         json_body={})
        assert missing.status_code == 404 and missing.json()["code"] == "proposal_not_found"
        assert a.get("/api/v1/agency/registry-proposals",
                     query={"status": "pending"}).json() == []
        # decided, a proposal keeps the ID number only masked
        with session_scope(app_state.sessions) as db:
            stored = [row.entry for row in db.scalars(select(RegistryProposal))]
        assert stored and not any(VALID_ID_NUMBER in e for e in stored)


def test_a_rejected_proposal_enters_nothing(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 153)
    agency = add_agency(app_state)
    inst = lab.institution or ""
    with client_for(app, lab) as c, client_for(app, agency) as a:
        proposal = c.post("/api/v1/registry-proposals", json_body=STAFF).json()["proposal_id"]
        reason = "签字范围与能力附表不符"
        no = a.post(f"/api/v1/agency/registry-proposals/{proposal}/rejection",
                    json_body={"reason": reason})
        assert no.status_code == 200, no.text
        assert no.json()["status"] == "rejected" and no.json()["record_id"] is None
        mine = c.get("/api/v1/registry-proposals", query={"status": "rejected"}).json()
        assert [(p["proposal_id"], p["reason"]) for p in mine] == [(proposal, reason)]
        assert c.get("/api/v1/registry-proposals", query={"status": "pending"}).json() == []
        assert a.get("/api/v1/audit/registry", query={"institution": inst}).json() == []
        approve = a.post(f"/api/v1/agency/registry-proposals/{proposal}/approval",
                         json_body={})
        assert approve.status_code == 409 and approve.json()["code"] == "proposal_decided"
        empty = a.post(f"/api/v1/agency/registry-proposals/{proposal}/rejection",
                       json_body={"reason": ""})
        assert empty.status_code == 422
