"""The supervision agency's register of witnesses and samplers (issue 13), through the API.

- an agency of 440300 registers and verifies witnesses of labs registered in 440300 and is
  refused (403 `out_of_region`) for a lab of 110000; a lab and an auditor cannot write;
- every write is a `registry` evidence record whose certificate chains to the platform
  root; seals and witness records signed with a verified key name it and carry no warning,
  a lab-registered key gives `witness_unverified` (record flags, report warnings, audit
  list);
- a replacement registered 1 working day before the change is flagged, 3 are not, and a
  holiday in between counts as no working day.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.clock import utc_now
from service.domain import accounts, rules
from service.domain.reports.lifecycle import china_today
from service.domain.trust import platform_ca
from service.state import ServiceState
from service.storage.db import session_scope
from signer.ca import WITNESS_SIGNING_EKU
from tests.labkit import (
    Account,
    add_agency,
    add_auditor,
    add_lab,
    client_for,
    make_app,
    make_uscc,
)
from tests.recordkit import (
    VALID_ID_NUMBER,
    Chain,
    WitnessSigner,
    ago,
    build_chain,
    created,
    data_body,
    lab_of,
    post_media,
    receipt_body,
    register_device,
    register_staff,
    sample_body,
    seal_body,
    sha256,
    specimen_photo,
    stored_record,
    witness_body,
)

META = {"conclusion": "pass", "approver": "王五"}


def registration(institution: str, signer: WitnessSigner, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "institution": institution,
        "person": {"name": "李四", "id_number": VALID_ID_NUMBER, "unit": "鹏城监理有限公司"},
        "role": "witness",
        "projects": ["深圳湾科技园3号楼"],
        "algorithm": signer.algorithm,
        "public_key": signer.public_b64(),
    }
    body.update(over)
    return body


_record = stored_record


def test_agency_writes_in_its_region_only(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 131)
    far_lab = add_lab(app_state, 132, region="110000")
    agency = add_agency(app_state)
    auditor = add_auditor(app_state)
    with client_for(app, agency) as a, client_for(app, lab) as c, client_for(
        app, auditor
    ) as r:
        signer = WitnessSigner.new()
        answer = a.post("/api/v1/agency/witnesses", json_body=registration(
            lab.institution or "", signer))
        assert answer.status_code == 201, answer.text
        out = answer.json()
        key = out["witness_key"]
        assert key["verified"] is True and key["role"] == "witness"
        assert key["witness"]["id_number"] != VALID_ID_NUMBER  # masked
        record = _record(app_state, out["record_id"])
        assert record["type"] == "registry" and record["institution"] == lab.institution
        body = record["body"]
        assert body["kind"] == "witness" and body["action"] == "register"
        assert body["agency"]["region"] == "440300"
        assert body["person"]["id_number"] == "110***********002X"
        assert body["witness_key"]["fingerprint"] == key["fingerprint"]
        assert [f["role"] for f in record["files"]] == ["witness_certificate"]
        # the certificate certifies that key and chains to the platform root
        der = base64.b64decode(key["certificate"])
        cert = x509.load_der_x509_certificate(der)
        assert record["files"][0]["sha256"] == body["certificate"]["sha256"]
        assert app_state.blobs.get(body["certificate"]["sha256"]) == der
        root = platform_ca(app_state.settings).root_certificate
        cert.verify_directly_issued_by(root)
        assert WITNESS_SIGNING_EKU in cert.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert base64.b64encode(spki).decode() == key["public_key"]
        # the lab sees its key as verified
        mine = c.get(f"/api/v1/witness-keys/{key['key_id']}").json()
        assert mine["verified"] is True and mine["registry_record_id"] == out["record_id"]

        # another region's lab: refused, nothing written
        far = a.post("/api/v1/agency/witnesses", json_body=registration(
            far_lab.institution or "", WitnessSigner.new()))
        assert far.status_code == 403 and far.json()["code"] == "out_of_region"
        unknown = a.post("/api/v1/agency/witnesses", json_body=registration(
            "91440300MA5F000000", WitnessSigner.new()))
        assert unknown.status_code in (404, 422)
        bad_id = a.post("/api/v1/agency/witnesses", json_body=registration(
            lab.institution or "", WitnessSigner.new(),
            person={"name": "李四", "id_number": VALID_ID_NUMBER[:-1] + "1"}))
        assert bad_id.status_code == 422 and bad_id.json()["code"] == "id_number_invalid"

        # a lab and an auditor cannot write agency facts
        for other in (c, r):
            refused = other.post("/api/v1/agency/witnesses", json_body=registration(
                lab.institution or "", WitnessSigner.new()))
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden"

        # a key the lab proposed: verified by the agency of its region only
        proposed = WitnessSigner.new("ecdsa-p256")
        proposed.register(c)
        far_agency = add_agency(app_state, "110000")
        with client_for(app, far_agency) as fa:
            no = fa.post(f"/api/v1/agency/witness-keys/{proposed.key_id}/verification",
                         json_body={"role": "sampler"})
            assert no.status_code == 403 and no.json()["code"] == "out_of_region"
        path = f"/api/v1/agency/witness-keys/{proposed.key_id}/verification"
        yes = a.post(path, json_body={"role": "sampler", "projects": ["深圳湾科技园3号楼"]})
        assert yes.status_code == 201, yes.text
        assert yes.json()["witness_key"]["role"] == "sampler"
        assert _record(app_state, yes.json()["record_id"])["body"]["action"] == "verify"
        again = a.post(path, json_body={})
        assert again.status_code == 409 and again.json()["code"] == "witness_key_verified"
        assert c.post(path, json_body={}).status_code == 403

        # the audit list: the agency and a national auditor see both; the far agency none
        listed = a.get("/api/v1/audit/registry").json()
        assert [e["record"]["id"] for e in listed] == [out["record_id"], yes.json()["record_id"]]
        assert len(r.get("/api/v1/audit/registry").json()) == 2
        with client_for(app, far_agency) as fa:
            assert fa.get("/api/v1/audit/registry").json() == []
            assert fa.get("/api/v1/audit/registry",
                          query={"institution": lab.institution}).status_code == 403


def _verified_chain(c: Any, a: Any, app_state: ServiceState, sample_code: str) -> Chain:
    """A chain whose witness key the agency verified before the seal was signed."""
    chain = build_chain(c, sample_code=sample_code + "-0")  # makes project, contract, …
    signer = WitnessSigner.new()
    signer.register(c)
    verified = a.post(f"/api/v1/agency/witness-keys/{signer.key_id}/verification",
                      json_body={"projects": [chain.project]})
    assert verified.status_code == 201, verified.text
    register_device(a, lab_of(a, verified.json()["record_id"]))
    register_staff(a, lab_of(a, verified.json()["record_id"]))
    sample = created(c.post("/api/v1/samples", json_body=sample_body(chain.commission,
                                                                   sample_code)))
    image_bytes = specimen_photo(sample_code)
    image = post_media(c, image_bytes)
    out = Chain(chain.project, chain.contract, chain.commission, sample, sample_code, image,
                sha256(image_bytes), signer)
    out.extra["registry"] = verified.json()["record_id"]
    out.seal = created(c.post("/api/v1/seals", json_body=seal_body(out)))
    out.witness = created(c.post("/api/v1/witnesses", json_body=witness_body(out)))
    out.receipt = created(c.post("/api/v1/receipts", json_body=receipt_body(out)))
    return out


def test_seals_of_verified_keys_name_the_registry_record(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 133)
    agency = add_agency(app_state)
    with client_for(app, agency) as a, client_for(app, lab) as c:
        chain = _verified_chain(c, a, app_state, "YP-REG-V")
        registry_leaf = _record(app_state, chain.extra["registry"])["_leaf"]
        for record_id in (chain.seal, chain.witness):
            rec = _record(app_state, record_id)
            assert registry_leaf in rec["parents"]
            assert "flags" not in rec["body"]
        # a lab-registered key: accepted, flagged witness_unverified
        plain = build_chain(c, sample_code="YP-REG-U")
        for record_id in (plain.seal, plain.witness):
            rec = _record(app_state, record_id)
            assert [f["rule"] for f in rec["body"]["flags"]] == ["witness_unverified"]
            assert registry_leaf not in rec["parents"]

        def report(ch: Chain, no: str) -> dict[str, Any]:
            test = created(c.post("/api/v1/test-records", json_body=data_body(ch, ago(300))))
            code = c.issue_code(no, ch.project).json()["code"]
            meta = {**META, "issued_on": utc_now().date().isoformat(),
                    "parents": [ch.sample, test]}
            answer = c.put(f"/api/v1/reports/{code}", json_body=meta)
            assert answer.status_code == 200, answer.text
            out: dict[str, Any] = answer.json()
            out["code"] = code
            return out

        good = report(chain, "BG-REG-V")
        assert good["warnings"] == [] and good["evidence_complete"] is True
        bad = report(plain, "BG-REG-U")
        assert [(w["code"], w["record_id"]) for w in bad["warnings"]] == [
            ("witness_unverified", plain.seal), ("witness_unverified", plain.witness)]
        assert bad["evidence_complete"] is True  # a warning, not a custody gap
        listed = a.get("/api/v1/audit/warnings", query={"code": "witness_unverified"}).json()
        assert {w["record_id"] for w in listed} == {plain.seal, plain.witness}
        assert {w["report_code"] for w in listed} == {bad["code"]}
        public = c.get(f"/api/v1/public/reports/{bad['code']}").json()
        assert [w["code"] for w in public["warnings"]] == ["witness_unverified"] * 2
        assert c.get(f"/api/v1/public/reports/{good['code']}").json()["warnings"] == []


def test_late_replacement_is_flagged(app_state: ServiceState) -> None:
    settings = app_state.settings
    today = rules.local_date(utc_now(), settings.rules.timezone)
    calendar = rules.WorkingCalendar.from_settings(settings.rules)
    holiday = calendar.add_working_days(today, 1)
    settings.rules.holidays = (holiday,)  # the next working day is a holiday now
    calendar = rules.WorkingCalendar.from_settings(settings.rules)
    app = make_app(app_state)
    lab = add_lab(app_state, 134)
    agency = add_agency(app_state)
    with client_for(app, agency) as a, client_for(app, lab) as c:
        first = a.post("/api/v1/agency/witnesses", json_body=registration(
            lab.institution or "", WitnessSigner.new()))
        old_key = first.json()["witness_key"]["key_id"]

        def replace(effective_on: str) -> dict[str, Any]:
            answer = a.post("/api/v1/agency/witnesses", json_body=registration(
                lab.institution or "", WitnessSigner.new(), replaces=old_key,
                effective_on=effective_on))
            assert answer.status_code == 201, answer.text
            return _record(app_state, answer.json()["record_id"])

        one_day = calendar.add_working_days(today, 1)
        late = replace(one_day.isoformat())
        flags = late["body"]["flags"]
        assert [f["rule"] for f in flags] == ["witness_replacement_late"]
        assert flags[0]["notice_working_days"] == 1 and flags[0]["replaces"] == old_key
        three = calendar.add_working_days(today, 3)
        # three calendar working days, counting the holiday, would be one day short
        assert (three - today).days >= 4
        on_time = replace(three.isoformat())
        assert "flags" not in on_time["body"]
        just_short = replace((three - timedelta(days=1)).isoformat())
        assert [f["rule"] for f in just_short["body"]["flags"]] == ["witness_replacement_late"]
        half = a.post("/api/v1/agency/witnesses", json_body=registration(
            lab.institution or "", WitnessSigner.new(), replaces=old_key))
        assert half.status_code == 422 and half.json()["code"] == "replacement_incomplete"
        flagged = c.get(f"/api/v1/records/{late['id']}").json()["flags"]
        assert [f["rule"] for f in flagged] == ["witness_replacement_late"]


def _doc_examples() -> dict[str, dict[str, Any]]:
    """The request bodies docs/registry.md shows, by the label above each."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "registry.md").read_text()
    found = re.findall(r"<!-- example: (.+?) -->\n```json\n(.*?)```", text, re.S)
    return {label: json.loads(body) for label, body in found}


def test_the_documented_examples_are_accepted(app_state: ServiceState) -> None:
    examples = _doc_examples()
    assert set(examples) == {
        "POST /api/v1/agency/witnesses",
        "POST /api/v1/agency/witness-keys/{key_id}/verification",
        "replacement",
        "POST /api/v1/agency/projects",
        "POST /api/v1/agency/devices",
        "POST /api/v1/agency/staff",
        "POST /api/v1/agency/qualifications",
        "POST /api/v1/report-codes",
        "POST /api/v1/registry-proposals",
    }
    with session_scope(app_state.sessions) as s:
        accounts.add_institution(s, app_state.settings, uscc="91440300MA0001301W",
                                 region="440300", name="鹏城检测")
        accounts.add_institution(s, app_state.settings, uscc=make_uscc(1302),
                                 region="440300", name="Other")
    app = make_app(app_state)
    agency = add_agency(app_state)
    with client_for(app, agency) as a:
        first = a.post("/api/v1/agency/witnesses",
                       json_body=examples["POST /api/v1/agency/witnesses"])
        assert first.status_code == 201, first.text
        key_id = first.json()["witness_key"]["key_id"]
        replacement = {**examples["replacement"], "replaces": key_id}
        second = a.post("/api/v1/agency/witnesses", json_body=replacement)
        assert second.status_code == 201, second.text
        with session_scope(app_state.sessions) as s:
            lab_key = accounts.issue_key(s, app_state.settings,
                                         institution="91440300MA0001301W").as_json()
        lab = Account(lab_key["key_id"], lab_key["secret"], institution="91440300MA0001301W")
        with client_for(app, lab) as c:
            proposed = WitnessSigner.new()
            proposed.register(c)
        verified = a.post(f"/api/v1/agency/witness-keys/{proposed.key_id}/verification",
                          json_body=examples[
                              "POST /api/v1/agency/witness-keys/{key_id}/verification"])
        assert verified.status_code == 201, verified.text
        assert verified.json()["witness_key"]["role"] == "sampler"
        project = a.post("/api/v1/agency/projects",
                         json_body=examples["POST /api/v1/agency/projects"])
        assert project.status_code == 201, project.text
        device = a.post("/api/v1/agency/devices",
                        json_body=examples["POST /api/v1/agency/devices"])
        assert device.status_code == 201, device.text
        staff = a.post("/api/v1/agency/staff", json_body=examples["POST /api/v1/agency/staff"])
        assert staff.status_code == 201, staff.text
        qual = a.post("/api/v1/agency/qualifications",
                      json_body=examples["POST /api/v1/agency/qualifications"])
        assert qual.status_code == 201, qual.text
        with client_for(app, lab) as c:
            chain = build_chain(c, sample_code="YP-DOC-EX")
            scoped = {**examples["POST /api/v1/report-codes"], "project_id": chain.project}
            issued = c.post("/api/v1/report-codes", json_body=scoped)
            assert issued.status_code == 201, issued.text  # 混凝土抗压强度 is in its scope
            proposal = c.post("/api/v1/registry-proposals",
                              json_body=examples["POST /api/v1/registry-proposals"])
            assert proposal.status_code == 201, proposal.text
        approved = a.post(f"/api/v1/agency/registry-proposals/"
                          f"{proposal.json()['proposal_id']}/approval", json_body={})
        assert approved.status_code == 201, approved.text


AGENCY_PROJECT = {
    "name": "深圳湾科技园3号楼",
    "project_no": "440305202611220101",
    "location": "深圳市南山区科苑南路",
    "region": "440305",
    "construction_unit": {"name": "深圳湾建设有限公司"},
    "supervision_unit": {"name": "鹏城监理有限公司"},
}


def test_projects_entered_by_the_agency_and_what_the_page_says(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 135)
    other_lab = add_lab(app_state, 136)
    far_lab = add_lab(app_state, 137, region="110000")
    agency = add_agency(app_state)
    with client_for(app, agency) as a, client_for(app, lab) as c, client_for(
        app, other_lab
    ) as o:
        entered = a.post("/api/v1/agency/projects", json_body={
            "institution": lab.institution, "project": AGENCY_PROJECT})
        assert entered.status_code == 201, entered.text
        entry_id = entered.json()["record_id"]
        entry = _record(app_state, entry_id)
        assert entry["type"] == "registry" and entry["body"]["kind"] == "project"
        assert entry["body"]["project"]["name"] == AGENCY_PROJECT["name"]
        assert entry["body"]["agency"]["region"] == "440300"
        far = a.post("/api/v1/agency/projects", json_body={
            "institution": far_lab.institution, "project": AGENCY_PROJECT})
        assert far.status_code == 403 and far.json()["code"] == "out_of_region"
        assert c.post("/api/v1/agency/projects", json_body={
            "institution": lab.institution, "project": AGENCY_PROJECT}).status_code == 403
        with_parents = a.post("/api/v1/agency/projects", json_body={
            "institution": lab.institution, "project": {**AGENCY_PROJECT, "parents": [entry_id]}})
        assert with_parents.status_code == 422
        assert with_parents.json()["code"] == "project_fields_invalid"

        # the lab's project names the registration: it becomes a parent
        chain = build_chain(c, sample_code="YP-REG-P", agency=a,
                            project_fields={"registered_project": entry_id})
        project = _record(app_state, chain.project)
        assert project["parents"] == [entry["_leaf"]]
        assert project["body"]["registered_project"] == entry_id
        # another lab cannot claim it; a witness registration is not a project
        stolen = o.post("/api/v1/projects", json_body={**AGENCY_PROJECT,
                                                       "construction_unit": {"name": "x"},
                                                       "registered_project": entry_id})
        assert stolen.status_code == 403 and stolen.json()["code"] == "forbidden"
        key_entry = a.post("/api/v1/agency/witnesses", json_body=registration(
            lab.institution or "", WitnessSigner.new())).json()["record_id"]
        wrong = c.post("/api/v1/projects", json_body={**AGENCY_PROJECT,
                                                      "registered_project": key_entry})
        assert wrong.status_code == 404 and wrong.json()["code"] == "registered_project_not_found"

        lab_only = build_chain(c, sample_code="YP-REG-L")

        def report(ch: Chain, no: str) -> str:
            test = created(c.post("/api/v1/test-records", json_body=data_body(ch, ago(300))))
            code = str(c.issue_code(no, ch.project).json()["code"])
            meta = {**META, "issued_on": utc_now().date().isoformat(),
                    "parents": [ch.sample, test]}
            assert c.put(f"/api/v1/reports/{code}", json_body=meta).status_code == 200
            return code

        vouched, unvouched = report(chain, "BG-REG-P"), report(lab_only, "BG-REG-L")
        steps = {s["type"]: s for s in c.get(f"/api/v1/public/reports/{vouched}").json()["chain"]}
        assert steps["project"]["details"]["project_registration"] == "agency"
        assert steps["seal"]["details"]["witness_check"] == "agency_verified"
        assert steps["seal"]["details"]["witness_verified_by"] == "监督站 440300"
        assert steps["witness"]["details"]["witness_check"] == "agency_verified"
        page = c.http.get(f"/v/{vouched}").text
        assert "监督机构已登记" in page and "监督机构已核验" in page
        assert "仅检测机构自行登记" not in page and "未经监督机构核验" not in page
        steps = {s["type"]: s for s in c.get(f"/api/v1/public/reports/{unvouched}").json()["chain"]}
        assert steps["project"]["details"]["project_registration"] == "lab_only"
        assert steps["seal"]["details"]["witness_check"] == "unverified"
        page = c.http.get(f"/v/{unvouched}").text
        assert "仅检测机构自行登记" in page and "未经监督机构核验" in page
        english = c.http.get(f"/v/{unvouched}", params={"lang": "en"}).text
        assert "the lab only" in english and "not verified by a supervision agency" in english



def test_devices_and_their_calibration(app_state: ServiceState) -> None:
    """An unregistered device and an expired calibration: accepted with the warning, in the
    record, the report's warnings, the page and the audit list; a registered, valid device:
    no warning, and the test record names the device's registry record."""
    app = make_app(app_state)
    lab = add_lab(app_state, 139)
    far_lab = add_lab(app_state, 140, region="110000")
    agency = add_agency(app_state)
    yesterday = (rules.local_date(utc_now(), "Asia/Shanghai") - timedelta(days=1)).isoformat()
    with client_for(app, agency) as a, client_for(app, lab) as c:
        far = a.post("/api/v1/agency/devices", json_body={
            "institution": far_lab.institution, "device": {"id": "X-1", "name": "x"},
            "calibration": {"kind": "calibration", "certificate_no": "1",
                            "valid_until": "2099-01-01"}})
        assert far.status_code == 403 and far.json()["code"] == "out_of_region"
        backwards = a.post("/api/v1/agency/devices", json_body={
            "institution": lab.institution, "device": {"id": "X-1", "name": "x"},
            "calibration": {"kind": "calibration", "certificate_no": "1",
                            "valid_from": "2026-02-01", "valid_until": "2026-01-01"}})
        assert backwards.status_code == 422
        assert backwards.json()["code"] == "calibration_dates_invalid"
        assert c.post("/api/v1/agency/devices", json_body={}).status_code == 403

        chain = build_chain(c, sample_code="YP-DEV-1", agency=a)  # registers YJ-2000-07
        good = created(c.post("/api/v1/test-records", json_body=data_body(chain, ago(300))))
        entries = [e for e in a.get("/api/v1/audit/registry").json()
                   if e["record"]["body"]["kind"] == "device"]
        assert len(entries) == 1
        assert entries[0]["leaf_hash"] in _record(app_state, good)["parents"]
        assert "flags" not in _record(app_state, good)["body"] or \
            _record(app_state, good)["body"]["flags"] == []

        unknown = c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(200), test_item="混凝土劈裂抗拉强度",
            device={"id": "WN-0001", "name": "万能试验机"}))
        assert unknown.status_code == 201, unknown.text
        assert [f["rule"] for f in unknown.json()["flags"]] == ["device_unregistered"]
        register_device(a, lab.institution or "", valid_until=yesterday,
                        device={"id": "KZ-0002", "name": "抗折试验机"})
        expired = c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(100), test_item="水泥胶砂抗折强度",
            device={"id": "KZ-0002", "name": "抗折试验机"}))
        assert expired.status_code == 201, expired.text
        flags = expired.json()["flags"]
        assert [f["rule"] for f in flags] == ["calibration_expired"]
        assert flags[0]["valid_until"] == yesterday

        code = str(c.issue_code("BG-DEV-1", chain.project).json()["code"])
        meta = {**META, "issued_on": utc_now().date().isoformat(),
                "parents": [chain.sample, good, unknown.json()["record_id"],
                            expired.json()["record_id"]]}
        answer = c.put(f"/api/v1/reports/{code}", json_body=meta)
        assert answer.status_code == 200, answer.text
        assert [(w["code"], w["record_id"]) for w in answer.json()["warnings"]] == [
            ("device_unregistered", unknown.json()["record_id"]),
            ("calibration_expired", expired.json()["record_id"]),
        ]
        listed = a.get("/api/v1/audit/warnings", query={"report_code": code}).json()
        assert sorted(w["code"] for w in listed) == ["calibration_expired", "device_unregistered"]
        page = c.http.get(f"/v/{code}").text
        assert 'data-code="device_unregistered"' in page
        assert 'data-code="calibration_expired"' in page
        assert "检测设备的检定/校准已过有效期" in page
        public = c.http.get(f"/api/v1/public/reports/{code}").json()
        checks = {step["record_id"]: step["details"].get("device_check")
                  for step in public["chain"] if step["type"] == "test_record"}
        assert checks == {good: "valid", unknown.json()["record_id"]: "unregistered",
                          expired.json()["record_id"]: "expired"}
        report_steps = [s["details"] for s in public["chain"] if s["type"] == "report"]
        assert report_steps[-1]["approver_check"] == "not_registered"  # none registered
        # a new certificate: the device is valid again for later tests
        register_device(a, lab.institution or "", device={"id": "KZ-0002", "name": "抗折试验机"})
        again = c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(50), test_item="水泥胶砂抗折强度", retest_reason="复检",
            device={"id": "KZ-0002", "name": "抗折试验机"}))
        assert again.json()["flags"] == []


def test_testers_and_approver_signing_scope(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 141)
    far_lab = add_lab(app_state, 142, region="110000")
    agency = add_agency(app_state)
    inst = lab.institution or ""
    with client_for(app, agency) as a, client_for(app, lab) as c:
        far = a.post("/api/v1/agency/staff", json_body={
            "institution": far_lab.institution,
            "person": {"name": "王五", "id_number": VALID_ID_NUMBER}, "roles": ["tester"]})
        assert far.status_code == 403 and far.json()["code"] == "out_of_region"
        scoped_tester = a.post("/api/v1/agency/staff", json_body={
            "institution": inst, "person": {"name": "王五", "id_number": VALID_ID_NUMBER},
            "roles": ["tester"], "signing_scope": ["混凝土抗压强度"]})
        assert scoped_tester.status_code == 422
        assert scoped_tester.json()["code"] == "signing_scope_invalid"

        chain = build_chain(c, sample_code="YP-STAFF-1", agency=a)  # 王五: a tester
        entry = _record(app_state, a.get("/api/v1/audit/registry").json()[-1]["record"]["id"])
        assert entry["body"]["kind"] == "staff" and entry["body"]["roles"] == ["tester"]
        assert entry["body"]["person"]["id_number"] == "110***********002X"
        known = created(c.post("/api/v1/test-records", json_body=data_body(chain, ago(300))))
        assert entry["_leaf"] in _record(app_state, known)["parents"]
        stranger = c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(200), test_item="混凝土劈裂抗拉强度", tester="赵六"))
        assert [f["rule"] for f in stranger.json()["flags"]] == ["tester_unregistered"]
        stranger_id = stranger.json()["record_id"]

        issued: list[str] = []

        def put(approver: str) -> Any:
            issued.append(approver)
            code = str(c.issue_code(f"BG-STAFF-{len(issued)}", chain.project).json()["code"])
            meta = {**META, "approver": approver, "issued_on": utc_now().date().isoformat(),
                    "parents": [chain.sample, known, stranger_id]}
            return c.put(f"/api/v1/reports/{code}", json_body=meta)

        # no approver registered yet: any approver signs, the tester warning shows
        open_answer = put("王五")
        assert open_answer.status_code == 200, open_answer.text
        assert [(w["code"], w["record_id"]) for w in open_answer.json()["warnings"]] == [
            ("tester_unregistered", stranger_id)]
        register_staff(a, inst, "李娜", roles=("approver",), signing_scope=("混凝土抗压强度",))
        unregistered = put("钱七")
        assert unregistered.status_code == 422
        assert unregistered.json()["code"] == "approver_unregistered"
        outside = put("李娜")  # the report cites 混凝土劈裂抗拉强度 too
        assert outside.status_code == 422 and outside.json()["code"] == "approver_out_of_scope"
        assert outside.json()["outside"] == ["混凝土劈裂抗拉强度"]
        register_staff(a, inst, "李娜", roles=("approver",),
                       signing_scope=("混凝土抗压强度", "混凝土劈裂抗拉强度"))
        inside = put("李娜")
        assert inside.status_code == 200, inside.text
        # the metadata record names the approver's registration; the page says so
        written = _record(app_state, inside.json()["record_id"])["body"]
        assert written["approver_registered_by"]["agency"] == "监督站 440300"
        public = c.get(f"/api/v1/public/reports/{inside.json()['code']}").json()
        last = [s["details"] for s in public["chain"] if s["type"] == "report"][-1]
        assert last["approver_check"] == "agency_registered"
        assert last["approver_registered_by"] == "监督站 440300"
        assert "approver_registered_by" not in _record(
            app_state, open_answer.json()["record_id"])["body"]


def test_an_sm2_witness_key_is_refused_clearly_not_certified(app_state: ServiceState) -> None:
    """The platform CA cannot certify SM2 keys yet: the agency's verification is a 422
    `witness_key_invalid` (not a 500), the key stays unverified, and its seals still carry
    `witness_unverified`."""
    app = make_app(app_state)
    lab = add_lab(app_state, 131)
    agency = add_agency(app_state)
    with client_for(app, lab) as c, client_for(app, agency) as a:
        chain = build_chain(c, sample_code="YP-SM2-REG", algorithm="sm2")
        r = a.post(f"/api/v1/agency/witness-keys/{chain.witness_key.key_id}/verification",
                   json_body={"projects": [chain.project]})
        assert r.status_code == 422 and r.json()["code"] == "witness_key_invalid", r.text
        assert "SM2" in r.json()["detail"]
        key = c.get(f"/api/v1/witness-keys/{chain.witness_key.key_id}").json()
        assert key["verified"] is False
        seal = stored_record(app_state, chain.seal)
        assert "witness_unverified" in json.dumps(seal["body"].get("flags", []))


def qualification(institution: str, no: str, items: list[str], *, valid_until: str = "2099-12-31",
                  specialty: str = "建筑材料及构配件") -> dict[str, Any]:
    return {"institution": institution,
            "certificate": {"no": no, "valid_from": "2020-01-01", "valid_until": valid_until},
            "scope": [{"specialty": specialty, "items": items}]}


def test_qualification_scope_refuses_reports_outside_it(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 143)
    far_lab = add_lab(app_state, 144, region="110000")
    agency = add_agency(app_state)
    inst = lab.institution or ""
    with client_for(app, agency) as a, client_for(app, lab) as c:
        far = a.post("/api/v1/agency/qualifications", json_body=qualification(
            far_lab.institution or "", "Q-FAR", ["混凝土抗压强度"]))
        assert far.status_code == 403 and far.json()["code"] == "out_of_region"
        backwards = qualification(inst, "Q-0", ["混凝土抗压强度"], valid_until="2019-12-31")
        bad = a.post("/api/v1/agency/qualifications", json_body=backwards)
        assert bad.status_code == 422 and bad.json()["code"] == "qualification_dates_invalid"

        chain = build_chain(c, sample_code="YP-QUAL-1")
        known = created(c.post("/api/v1/test-records", json_body=data_body(chain, ago(300))))
        other = created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(200), test_item="混凝土劈裂抗拉强度")))
        issued: list[int] = []

        def put() -> Any:
            issued.append(1)
            code = str(c.issue_code(f"BG-QUAL-{len(issued)}", chain.project).json()["code"])
            meta = {**META, "issued_on": utc_now().date().isoformat(),
                    "parents": [chain.sample, known, other]}
            return c.put(f"/api/v1/reports/{code}", json_body=meta)

        # no qualification registered yet: the lab is not onboarded, reports pass
        assert put().status_code == 200
        entry_id = created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-1", ["混凝土抗压强度"])))
        entry = _record(app_state, entry_id)
        assert entry["type"] == "registry" and entry["body"]["kind"] == "qualification"
        assert entry["body"]["scope"] == [
            {"specialty": "建筑材料及构配件", "items": ["混凝土抗压强度"]}]
        assert entry["body"]["certificate"]["no"] == "Q-1"
        listed = a.get("/api/v1/audit/registry", query={"institution": inst}).json()
        assert entry_id in [e["record"]["id"] for e in listed]

        outside = put()  # 混凝土劈裂抗拉强度 is in no certificate of the lab
        assert outside.status_code == 422 and outside.json()["code"] == "out_of_scope"
        assert outside.json()["outside"] == ["混凝土劈裂抗拉强度"]
        # a second certificate covers it, but its last valid day was yesterday
        yesterday = (china_today() - timedelta(days=1)).isoformat()
        created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-2", ["混凝土劈裂抗拉强度"], valid_until=yesterday, specialty="见证取样")))
        expired = put()
        assert expired.status_code == 422, expired.text
        assert expired.json()["code"] == "qualification_expired"
        assert expired.json()["certificate_no"] == "Q-2"
        # the renewed certificate (same number) replaces the entry: the report passes
        created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-2", ["混凝土劈裂抗拉强度"], specialty="见证取样")))
        renewed = put()
        assert renewed.status_code == 200, renewed.text
        # an expired certificate that covered 混凝土抗压强度 too does not take it away
        created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-OLD", ["混凝土抗压强度"], valid_until=yesterday)))
        assert put().status_code == 200


def test_code_requests_naming_test_items_are_checked_against_the_scope(
    app_state: ServiceState,
) -> None:
    """A code request may name its `test_items`: then an item outside the lab's registered
    scope is refused at issuance (422 `out_of_scope`), one only an expired certificate
    covers too (422 `qualification_expired`), and nothing is issued; a request naming none
    is issued as before and the report step still checks what the report cites."""
    app = make_app(app_state)
    lab = add_lab(app_state, 147)
    agency = add_agency(app_state)
    inst = lab.institution or ""
    yesterday = (china_today() - timedelta(days=1)).isoformat()
    with client_for(app, agency) as a, client_for(app, lab) as c:
        chain = build_chain(c, sample_code="YP-QUAL-CODE")

        def request(report_no: str, items: list[str] | None) -> Any:
            body: dict[str, Any] = {"report_no": report_no, "project_id": chain.project}
            if items is not None:
                body["test_items"] = items
            return c.post("/api/v1/report-codes", json_body=body)

        # no qualification registered: named items are not held to anything yet
        assert request("BG-QC-0", ["混凝土劈裂抗拉强度"]).status_code == 201
        created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-C1", ["混凝土抗压强度"])))
        created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-C2", ["水泥胶砂抗折强度"], valid_until=yesterday, specialty="见证取样")))

        outside = request("BG-QC-1", ["混凝土抗压强度", "混凝土劈裂抗拉强度"])
        assert outside.status_code == 422, outside.text
        assert outside.json()["code"] == "out_of_scope"
        assert outside.json()["outside"] == ["混凝土劈裂抗拉强度"]
        expired = request("BG-QC-1", ["水泥胶砂抗折强度"])
        assert expired.status_code == 422 and expired.json()["code"] == "qualification_expired"
        assert expired.json()["certificate_no"] == "Q-C2"
        empty = request("BG-QC-1", [])
        assert empty.status_code == 422 and empty.json()["code"] == "validation_error"
        # refused requests issued nothing: the number is still free
        inside = request("BG-QC-1", ["混凝土抗压强度"])
        assert inside.status_code == 201, inside.text

        # without test_items: issued as before, the report step checks the cited items
        plain = request("BG-QC-2", None)
        assert plain.status_code == 201, plain.text
        other = created(c.post("/api/v1/test-records", json_body=data_body(
            chain, ago(200), test_item="混凝土劈裂抗拉强度")))
        meta = {**META, "issued_on": utc_now().date().isoformat(),
                "parents": [chain.sample, other]}
        refused = c.put(f"/api/v1/reports/{plain.json()['code']}", json_body=meta)
        assert refused.status_code == 422 and refused.json()["code"] == "out_of_scope"
        # a code issued for named items: the report step checks what the report cites
        also = c.put(f"/api/v1/reports/{inside.json()['code']}", json_body=meta)
        assert also.status_code == 422 and also.json()["code"] == "out_of_scope"


def test_qualifications_and_calibrations_expiring_soon(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 145)
    far_lab = add_lab(app_state, 146, region="110000")
    agency = add_agency(app_state)
    far_agency = add_agency(app_state, region="110000")
    auditor = add_auditor(app_state)
    inst, far = lab.institution or "", far_lab.institution or ""
    today = china_today()

    def day(n: int) -> str:
        return (today + timedelta(days=n)).isoformat()

    with client_for(app, agency) as a, client_for(app, far_agency) as fa, client_for(
        app, auditor
    ) as r:
        soon = created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-SOON", ["混凝土抗压强度"], valid_until=day(20))))
        created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-LATER", ["混凝土抗压强度"], valid_until=day(200))))
        created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-GONE", ["混凝土抗压强度"], valid_until=day(-3))))
        device = register_device(a, inst, valid_until=day(5))
        register_device(a, inst, valid_until=day(90), device={"id": "YJ-LATER", "name": "天平"})
        far_soon = created(fa.post("/api/v1/agency/qualifications", json_body=qualification(
            far, "Q-FAR", ["混凝土抗压强度"], valid_until=day(10))))

        mine = a.get("/api/v1/audit/registry/expiring")
        assert mine.status_code == 200, mine.text
        # soonest first; the expired one and those beyond 30 days are not listed
        assert [(e["kind"], e["record_id"], e["days_left"]) for e in mine.json()] == [
            ("device", device, 5), ("qualification", soon, 20)]
        assert mine.json()[1]["certificate_no"] == "Q-SOON"
        assert mine.json()[0]["device_id"] and "certificate_no" not in mine.json()[0]
        # a wider window takes the later ones in; another region's agency sees its own
        wide = a.get("/api/v1/audit/registry/expiring", query={"days": "100"}).json()
        assert len(wide) == 3
        assert [e["record_id"] for e in fa.get("/api/v1/audit/registry/expiring").json()] == [
            far_soon]
        outside = fa.get("/api/v1/audit/registry/expiring", query={"institution": inst})
        assert outside.status_code == 403
        everyone = r.get("/api/v1/audit/registry/expiring").json()
        assert {e["record_id"] for e in everyone} >= {device, soon, far_soon}
        one = r.get("/api/v1/audit/registry/expiring", query={"institution": far}).json()
        assert [e["record_id"] for e in one] == [far_soon]
        bad = r.get("/api/v1/audit/registry/expiring", query={"days": "9999"})
        assert bad.status_code == 422


def test_cli_registry_list(
    app_state: ServiceState, monkeypatch: Any, capsys: Any
) -> None:
    from service import cli
    from service.settings import get_settings

    app = make_app(app_state)
    lab = add_lab(app_state, 147)
    other = add_lab(app_state, 148)
    agency = add_agency(app_state)
    inst = lab.institution or ""
    with client_for(app, agency) as a:
        qual = created(a.post("/api/v1/agency/qualifications", json_body=qualification(
            inst, "Q-CLI", ["混凝土抗压强度"])))
        device = register_device(a, inst)
        other_device = register_device(a, other.institution or "")
    monkeypatch.setenv("JZ_DATA_DIR", str(app_state.settings.data_dir))
    monkeypatch.setenv("JZ_DATABASE__URL", app_state.settings.database_url)
    get_settings.cache_clear()
    try:
        def run(*argv: str) -> list[dict[str, Any]]:
            assert cli.main(["registry", "list", *argv]) == 0
            return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

        everything = run()
        assert [e["record"]["id"] for e in everything] == [qual, device, other_device]
        assert all(e["leaf_hash"] for e in everything)
        assert [e["record"]["id"] for e in run("--institution", inst)] == [qual, device]
        assert [e["record"]["id"] for e in run("--kind", "device")] == [device, other_device]
        only = run("--institution", inst, "--kind", "qualification")
        assert [e["record"]["body"]["certificate"]["no"] for e in only] == ["Q-CLI"]
        assert run("--kind", "witness") == []
        from service.domain import registry

        with session_scope(app_state.sessions) as s:  # page by page, nothing lost
            paged = [e["record"]["id"] for e in registry.iter_entries(s, page=1)]
        assert paged == [qual, device, other_device]
    finally:
        get_settings.cache_clear()
