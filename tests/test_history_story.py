"""Issue 12 end to end on a real chain: what a dishonest lab hides shows up everywhere.

Through the HTTP API (records signed by a real witness key), anchored on the session's
Hardhat node: the public JSON, the page, the evidence bundle and `jianzheng-verify` (with
`--strict`) all show an uncited test record and custody gaps; a bundle missing a record of
the report's history fails naming it; a history record deleted from the database makes
the page name the step.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.worker import AnchorWorker, anchor_until_drained
from service.client import JianzhengClient
from service.clock import utc_now
from service.domain.trust import trust_roots_pem
from service.state import ServiceState
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import state_with_chain
from tests.labkit import add_agency, add_auditor, add_lab, client_for, make_app
from tests.public_kit import make_pdf
from tests.recordkit import (
    WitnessSigner,
    ago,
    build_chain,
    created,
    data_body,
    receipt_body,
    sample_body,
    seal_body,
    witness_body,
)
from verifier.cli import main as verify_main

pytestmark = pytest.mark.chain


@dataclass
class Story:
    state: ServiceState
    chain: ChainInfo
    lab: JianzhengClient
    auditor: JianzhengClient
    picked: str  # the report citing only the retest
    gap: str  # the report on a sample with no custody records
    failing: str
    passing: str
    bare_sample: str
    roots: Path
    #: custody case -> report code (a sample missing exactly those steps)
    cases: dict[str, str]
    #: a report whose seal and witness record a key no agency verified signed
    unverified: str = ""
    unverified_records: tuple[str, str] = ("", "")

    def public(self, code: str) -> dict[str, Any]:
        r = self.lab.http.get(f"/api/v1/public/reports/{code}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def page(self, code: str) -> str:
        r = self.lab.http.get(f"/v/{code}")
        assert r.status_code == 200
        return r.text

    def bundle(self, code: str, tmp: Path) -> Path:
        r = self.auditor.get(f"/api/v1/audit/reports/{code}/bundle")
        assert r.status_code == 200, r.text
        path = tmp / f"{code}.zip"
        path.write_bytes(r.content)
        return path

    def verify(self, path: Path, *extra: str, report: Path | None = None) -> int:
        args = [str(path), "--rpc", self.chain.rpc_url, "--registry", self.chain.registry,
                "--chain-id", str(self.chain.chain_id), "--trust-roots", str(self.roots),
                *extra]
        if report is not None:
            args += ["--json", str(report)]
        return verify_main(args)


def _meta(*parents: str) -> dict[str, Any]:
    return {"conclusion": "pass", "issued_on": utc_now().date().isoformat(),
            "approver": "王五", "parents": list(parents)}


#: A sample missing exactly some custody steps -> the warnings its report must carry.
CASES: dict[str, list[str]] = {
    "no_receipt": ["custody_receipt_missing"],
    "no_witness": ["custody_witness_missing"],
    "no_seal": ["custody_seal_missing", "custody_receipt_missing"],  # no seal, no receipt
    "seal_broken": ["seal_check_failed"],
}


def _custody_case(lab: JianzhengClient, base: Any, name: str) -> str:
    """A sample of `base`'s commission with the custody records of case `name`, its test
    record, and a report on it (metadata; the PDF is signed by the fixture)."""
    code = f"YP-CASE-{name.upper().replace('_', '-')}"
    sample = created(lab.post("/api/v1/samples", json_body=sample_body(base.commission, code)))
    chain = replace(base, sample=sample, sample_code=code)
    if name != "no_seal":
        chain.seal = created(lab.post("/api/v1/seals", json_body=seal_body(chain)))
    if name != "no_witness":
        created(lab.post("/api/v1/witnesses", json_body=witness_body(chain)))
    if name in ("no_witness", "seal_broken"):
        intact = name != "seal_broken"
        created(lab.post("/api/v1/receipts", json_body=receipt_body(chain, seal_intact=intact)))
    test = created(lab.post("/api/v1/test-records", json_body=data_body(
        chain, ago(60), parents=[sample])))
    report = lab.issue_code(f"BG-{code}", base.project).json()["code"]
    r = lab.put(f"/api/v1/reports/{report}", json_body=_meta(sample, test))
    assert r.status_code == 200, r.text
    return str(report)


def _unverified_case(lab: JianzhengClient, base: Any) -> tuple[str, tuple[str, str]]:
    """A fully sealed, witnessed and received sample whose witness key only the lab
    registered, its test record, and a report on it."""
    code = "YP-CASE-LAB-KEY"
    signer = WitnessSigner.new()
    signer.register(lab, name="赵六")
    sample = created(lab.post("/api/v1/samples", json_body=sample_body(base.commission, code)))
    chain = replace(base, sample=sample, sample_code=code, witness_key=signer)
    chain.seal = created(lab.post("/api/v1/seals", json_body=seal_body(chain)))
    witness = created(lab.post("/api/v1/witnesses", json_body=witness_body(chain)))
    created(lab.post("/api/v1/receipts", json_body=receipt_body(chain)))
    test = created(lab.post("/api/v1/test-records", json_body=data_body(
        chain, ago(60), parents=[sample])))
    report = lab.issue_code(f"BG-{code}", base.project).json()["code"]
    r = lab.put(f"/api/v1/reports/{report}", json_body=_meta(sample, test))
    assert r.status_code == 200, r.text
    return str(report), (chain.seal, witness)


@pytest.fixture(scope="module")
def story(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("history")
    chain = new_chain(hardhat)
    state = state_with_chain(tmp, f"sqlite:///{tmp / 'jz.db'}", chain,
                             public={"rate_limit_per_minute": 0}, signing={"level": "B-B"})
    app = make_app(state)
    lab_account = add_lab(state, 131)
    lab = client_for(app, lab_account)
    auditor = client_for(app, add_auditor(state))
    agency = client_for(app, add_agency(state))
    c = build_chain(lab, sample_code="YP-STORY-1", agency=agency)
    failing = created(lab.post("/api/v1/test-records", json_body=data_body(
        c, ago(300), results={"strength_MPa": 18.2})))
    passing = created(lab.post("/api/v1/test-records", json_body=data_body(
        c, ago(200), results={"strength_MPa": 36.1}, retest_reason="复检：首组试块破损")))
    picked = lab.issue_code("BG-STORY-1", c.project).json()["code"]
    metadata = lab.put(f"/api/v1/reports/{picked}", json_body=_meta(c.sample, passing))
    assert metadata.status_code == 200, metadata.text
    bare = created(lab.post("/api/v1/samples", json_body=sample_body(c.commission, "YP-STORY-2")))
    bare_test = created(lab.post("/api/v1/test-records", json_body=data_body(
        c, ago(100), parents=[bare])))
    gap = lab.issue_code("BG-STORY-2", c.project).json()["code"]
    assert lab.put(f"/api/v1/reports/{gap}", json_body=_meta(bare, bare_test)).status_code == 200
    cases = {name: _custody_case(lab, c, name) for name in CASES}
    unverified, unverified_records = _unverified_case(lab, c)
    for code in (picked, gap, *cases.values(), unverified):
        r = lab.put(f"/api/v1/reports/{code}/pdf", content=make_pdf(),
                    content_type="application/pdf")
        assert r.status_code == 200, r.text
    anchor_until_drained(AnchorWorker(state.settings, state.engine, chain))
    roots = tmp / "roots.pem"
    roots.write_bytes(trust_roots_pem(state.settings))
    yield Story(state, chain, lab, auditor, picked, gap, failing, passing, bare, roots, cases,
                unverified, unverified_records)
    state.close()


def test_the_cherry_pick_is_visible_on_the_page_in_json_bundle_and_cli(
    story: Story, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = story.public(story.picked)
    assert data["status"] == "genuine"
    assert [(w["code"], w["record_id"]) for w in data["warnings"]] == [
        ("test_record_uncited", story.failing)
    ]
    assert data["evidence_complete"] is True
    tests = {s["record_id"]: s for s in data["chain"] if s["type"] == "test_record"}
    assert tests[story.failing]["cited"] is False and tests[story.passing]["cited"] is True
    assert tests[story.passing]["details"]["retest_reason"] == "复检：首组试块破损"
    assert "strength_MPa: 18.2" in tests[story.failing]["details"]["results"]
    raw = story.lab.http.get(tests[story.failing]["raw_data_url"])
    assert raw.status_code == 200 and raw.json()["area_mm2"] == 22500
    page = story.page(story.picked)
    assert 'id="warnings"' in page and 'data-code="test_record_uncited"' in page
    assert "未被报告引用" in page and "复检：首组试块破损" in page
    bundle = story.bundle(story.picked, tmp_path)
    with zipfile.ZipFile(bundle) as z:
        manifest = json.loads(z.read("manifest.json"))
    in_bundle = {p["record"]["id"] for p in manifest["proofs"]}
    assert {story.failing, story.passing} <= in_bundle
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert story.verify(bundle, report=report) == 0
    out = capsys.readouterr().out
    assert "WARN  test_record_uncited" in out
    warnings = json.loads(report.read_text())["results"][0]["warnings"]
    assert [(w["code"], w["record_id"]) for w in warnings] == [
        ("test_record_uncited", story.failing)
    ]
    assert story.verify(bundle, "--strict") == 4


def test_custody_gaps_are_visible_everywhere(
    story: Story, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    custody = ["custody_seal_missing", "custody_witness_missing", "custody_receipt_missing"]
    data = story.public(story.gap)
    assert data["status"] == "genuine"  # a warned report keeps its status
    assert [w["code"] for w in data["warnings"]] == custody
    assert data["evidence_complete"] is False
    page = story.page(story.gap)
    assert 'data-evidence-complete="false"' in page
    for code in custody:
        assert f'data-code="{code}"' in page
    listed = story.auditor.get("/api/v1/audit/warnings", query={"report_code": story.gap})
    assert sorted(w["code"] for w in listed.json()) == sorted(custody)
    bundle = story.bundle(story.gap, tmp_path)
    capsys.readouterr()
    assert story.verify(bundle) == 0
    out = capsys.readouterr().out
    for code in custody:
        assert f"WARN  {code}" in out
    assert story.verify(bundle, "--strict") == 4


@pytest.mark.parametrize("case", list(CASES))
def test_each_custody_gap_gives_exactly_its_warning(
    story: Story, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, expected = story.cases[case], CASES[case]
    data = story.public(code)
    assert data["status"] == "genuine"
    assert [w["code"] for w in data["warnings"]] == expected
    assert data["evidence_complete"] is False
    page = story.page(story.cases[case])
    assert sorted(set(re.findall(r'data-code="([a-z_]+)"', page))) == sorted(expected)
    listed = story.auditor.get("/api/v1/audit/warnings", query={"report_code": code}).json()
    assert sorted(w["code"] for w in listed) == sorted(expected)
    bundle = story.bundle(code, tmp_path)
    capsys.readouterr()
    assert story.verify(bundle) == 0
    warned = sorted(set(re.findall(r"^WARN  ([a-z_]+)", capsys.readouterr().out, re.M)))
    assert warned == sorted(expected)
    assert story.verify(bundle, "--strict") == 4


def test_a_bundle_missing_a_history_record_fails_naming_it(
    story: Story, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = story.bundle(story.picked, tmp_path)
    capsys.readouterr()
    assert story.verify(bundle) == 0
    with zipfile.ZipFile(bundle) as z:
        manifest = json.loads(z.read("manifest.json"))
        members = {n: z.read(n) for n in z.namelist()}
    hidden = next(p for p in manifest["proofs"] if p["record"]["id"] == story.failing)
    manifest["proofs"] = [p for p in manifest["proofs"] if p is not hidden]
    members["manifest.json"] = json.dumps(manifest).encode()
    cut = tmp_path / "cut.zip"
    with zipfile.ZipFile(cut, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    capsys.readouterr()
    assert story.verify(cut) == 1
    out = capsys.readouterr().out
    assert "FAIL  history_record_missing" in out and hidden["leaf_hash"] in out


#: The rows that name a test record by id (deleted together, put back afterwards); its
#: leaf stays in its anchored batch, as after someone hid the record from the database.
_NAMING = (
    ("record_parents", "child_id = :id"),
    ("record_flags", "record_id = :id"),
    ("sample_test_items", "record_id = :id"),
    ("outbox", "record_id = :id"),  # a batch is an outbox range: the row names the record
    ("records", "id = :id"),
)


def test_a_history_record_deleted_from_the_database_is_named(story: Story) -> None:
    from sqlalchemy import text

    with story.state.engine.begin() as conn:
        rows = {
            t: conn.execute(text(f"SELECT * FROM {t} WHERE {w}"), {"id": story.failing})
            .mappings().all()
            for t, w in _NAMING
        }
        for t, w in _NAMING:
            conn.execute(text(f"DELETE FROM {t} WHERE {w}"), {"id": story.failing})
    try:
        data = story.public(story.picked)
        assert data["status"] == "tampered"
        assert data["problem"]["type"] == "history"
        assert "样品全过程记录" in story.page(story.picked)
    finally:
        with story.state.engine.begin() as conn:
            for table in ("records", "outbox", "record_flags", "record_parents",
                          "sample_test_items"):
                for row in rows[table]:
                    cols = ", ".join(row.keys())
                    vals = ", ".join(f":{k}" for k in row.keys())
                    conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({vals})"), dict(row))
    after = story.public(story.picked)
    assert after["status"] == "genuine", after["problem"]


def test_a_witness_key_no_agency_verified_is_warned_everywhere(
    story: Story, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other reports' keys were verified by the agency: their bundles carry the key's
    certificate, which jianzheng-verify chains to the platform roots (no warning above);
    this one's key only the lab registered."""
    expected = [("witness_unverified", rid) for rid in story.unverified_records]
    data = story.public(story.unverified)
    assert data["status"] == "genuine" and data["evidence_complete"] is True
    assert [(w["code"], w["record_id"]) for w in data["warnings"]] == expected
    page = story.page(story.unverified)
    assert 'data-code="witness_unverified"' in page and "未经监督机构核验" in page
    listed = story.auditor.get("/api/v1/audit/warnings",
                               query={"report_code": story.unverified}).json()
    assert sorted((w["code"], w["record_id"]) for w in listed) == sorted(expected)
    bundle = story.bundle(story.unverified, tmp_path)
    report = tmp_path / "unverified.json"
    capsys.readouterr()
    assert story.verify(bundle, report=report) == 0
    out = capsys.readouterr().out
    assert "WARN  witness_unverified" in out
    warnings = json.loads(report.read_text())["results"][0]["warnings"]
    assert [(w["code"], w["record_id"]) for w in warnings] == expected
    assert story.verify(bundle, "--strict") == 4
    # a verified report's bundle: the certificate is in it and chains to the roots
    good = story.bundle(story.cases["no_receipt"], tmp_path)
    with zipfile.ZipFile(good) as z:
        manifest = json.loads(z.read("manifest.json"))
        registry = [p["record"] for p in manifest["proofs"] if p["record"]["type"] == "registry"]
        assert registry and registry[0]["body"]["kind"] == "witness"
        cert_sha = registry[0]["files"][0]["sha256"]
        assert f"files/{cert_sha}" in z.namelist()
    capsys.readouterr()
    assert story.verify(good) == 0
    out = capsys.readouterr().out
    assert "witness_unverified" not in out
    assert "2 of 2 seal and witness records signed by a key certified" in out
    # the same bundle checked against another CA's root: its witnesses are unverified
    from signer.ca import DevCA
    from verifier.bundle import open_bundle, witness_certificate_warnings

    other = DevCA(tmp_path / "other-ca", passphrase=b"x" * 16, crl_url="http://x/crl")
    with open_bundle(good) as opened:
        checks, found = witness_certificate_warnings(opened, [other.roots_pem()])
        assert [w.code for w in found] == ["witness_unverified"] * 2
        assert "0 of 2" in checks[0].detail
        _, found = witness_certificate_warnings(opened, [story.roots.read_bytes()])
        assert found == []


def test_an_edited_registry_row_makes_the_page_name_the_step(story: Story) -> None:
    """The agency's verification is evidence like the rest: editing its row in the database
    makes the page of a report whose seal names it say tampered, naming that step."""
    from sqlalchemy import text

    code = story.cases["no_receipt"]
    assert story.public(code)["status"] == "genuine"
    steps = [s for s in story.public(code)["chain"] if s["type"] == "registry"]
    # the witness key's verification, the device's and the tester's registrations
    assert sorted(s["details"]["registry_kind"] for s in steps) == ["device", "staff", "witness"]
    steps = [s for s in steps if s["details"]["registry_kind"] == "witness"]
    assert steps[0]["check"] == "verified"
    entry = steps[0]["record_id"]
    with story.state.engine.begin() as conn:
        original = conn.execute(
            text("SELECT canonical FROM records WHERE id = :id"), {"id": entry}
        ).scalar_one()
        edited = bytes(original).replace("鹏城监理".encode(), "某某监理".encode())
        assert edited != bytes(original)
        conn.execute(text("UPDATE records SET canonical = :c WHERE id = :id"),
                     {"c": edited, "id": entry})
    try:
        data = story.public(code)
        assert data["status"] == "tampered"
        assert data["problem"]["record_id"] == entry
        assert data["problem"]["step"]["zh"] == "监督机构登记"
        assert 'data-step="registry"' in story.page(code)
    finally:
        with story.state.engine.begin() as conn:
            conn.execute(text("UPDATE records SET canonical = :c WHERE id = :id"),
                         {"c": original, "id": entry})
    assert story.public(code)["status"] == "genuine"
