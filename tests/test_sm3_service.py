"""A deployment set to an SM3 evidence log (`JZ_EVIDENCE__HASH=sm3`, INTERFACE §7.7), end to
end on a real chain: records through the HTTP API (signed with an HMAC-SM3 lab key), a
sealed report, the real anchoring worker, proofs and the bundle, `jianzheng-verify` with the
service out of the loop, revocation; the log hash is pinned in the database; a bundle of
one kind fed as the other fails clearly."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.contract import RegistryClient
from service.anchoring.worker import AnchorWorker, anchor_until_drained
from service.client import JianzhengClient
from service.domain import accounts
from service.domain.trust import platform_ca, trust_roots_pem
from service.errors import IntegrityFault
from service.state import ServiceState, build_state
from service.storage import loghash
from service.storage.db import make_engine, session_scope
from service.storage.leaves import batch_leaf_hashes
from service.storage.models import Batch, KeyValue, Record
from signer.keys import load_certificates
from signer.qrkeys import QrKeyStore
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import make_settings, state_with_chain
from tests.fixtures.signer import pdfsig
from tests.labkit import add_auditor, add_lab, client_for, make_app, seed_record
from tests.public_kit import make_pdf
from tests.qr_kit import qr_texts, render_page, run_offline
from tests.recordkit import TINY_PDF, ago, build_chain, created, data_body
from verifier.bundle import open_bundle, verify_bundle
from verifier.certificate_sm2 import check_certificate_sm2, check_statement, read_attachment
from verifier.chain import RpcClient
from verifier.cli import main as verify_main
from verifier.merkle import hasher, leaf_hash, merkle_root
from verifier.proof import Pins
from verifier.qr import decode_payload, parse_trust_list, verify_qr_text

pytestmark = pytest.mark.chain


def sm3(data: bytes) -> str:
    return hasher("sm3")(data).hex()


@dataclass
class World:
    state: ServiceState
    chain: ChainInfo
    worker: AnchorWorker
    lab: JianzhengClient
    auditor: JianzhengClient
    code: str
    pdf: bytes
    roots: Path
    contract: str
    qr_kid: str

    def bundle(self, tmp: Path, name: str = "b.zip") -> Path:
        r = self.auditor.get(f"/api/v1/audit/reports/{self.code}/bundle")
        assert r.status_code == 200, r.text
        path = tmp / name
        path.write_bytes(r.content)
        return path

    def pins(self) -> Pins:
        return Pins(chain_id=self.chain.chain_id, registry=self.chain.registry)

    def verify(self, path: Path, *extra: str) -> int:
        return verify_main([str(path), "--rpc", self.chain.rpc_url, "--registry",
                            self.chain.registry, "--chain-id", str(self.chain.chain_id),
                            "--trust-roots", str(self.roots), *extra])


def _sm3_lab(state: ServiceState, app: Any) -> JianzhengClient:
    """A lab whose client signs with a JZ1-HMAC-SM3 key (§7.7)."""
    lab = add_lab(state, 1607)
    with session_scope(state.sessions) as s:
        key = accounts.issue_key(s, state.settings, institution=lab.institution,
                                 algorithm="hmac-sm3")
    client = client_for(app, lab)
    return JianzhengClient("http://testserver", key.key_id, key.secret, http=client.http,
                           algorithm="hmac-sm3")


@pytest.fixture(scope="module")
def world(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("sm3")
    chain = new_chain(hardhat)
    state = state_with_chain(tmp, f"sqlite:///{tmp / 'jz.db'}", chain,
                             public={"rate_limit_per_minute": 0},
                             signing={"level": "B-B", "certificate_sm2": True},
                             evidence={"hash": "sm3"})
    app = make_app(state)
    lab = _sm3_lab(state, app)
    auditor = client_for(app, add_auditor(state))
    c = build_chain(lab, sample_code="YP-SM3-1", algorithm="sm2")
    test = created(lab.post("/api/v1/test-records", json_body=data_body(c, ago(120))))
    r = lab.issue_code("BG-SM3-1", c.project)
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    r = lab.put(f"/api/v1/reports/{code}", json_body={
        "conclusion": "pass", "issued_on": "2026-11-22", "approver": "王五",
        "parents": [c.sample, test]})
    assert r.status_code == 200, r.text
    # the platform's QR payloads are signed with SM2 from now on (§7.7)
    qr_kid = QrKeyStore(platform_ca(state.settings)).rotate(algorithm="SM2", grace_s=0)
    pdf = make_pdf(2, "检测报告 SM3")
    r = lab.put(f"/api/v1/reports/{code}/pdf", content=pdf, content_type="application/pdf")
    assert r.status_code == 200, r.text
    worker = AnchorWorker(state.settings, state.engine, chain)
    anchor_until_drained(worker)
    roots = tmp / "roots.pem"
    roots.write_bytes(trust_roots_pem(state.settings))
    yield World(state, chain, worker, lab, auditor, code, pdf, roots, c.contract, qr_kid)
    state.close()


def _manifest(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as z:
        data: dict[str, Any] = json.loads(z.read("manifest.json"))
    return data


def _rewrite(src: Path, dst: Path, change: Any) -> Path:
    """A copy of bundle `src` with its manifest passed through `change`."""
    with zipfile.ZipFile(src) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()}
    manifest = change(json.loads(entries["manifest.json"]))
    entries["manifest.json"] = json.dumps(manifest, ensure_ascii=False).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zout:
        for name, data in entries.items():
            zout.writestr(name, data)
    dst.write_bytes(buf.getvalue())
    return dst


def test_leaves_nodes_and_anchored_roots_are_sm3(world: World) -> None:
    with world.state.sessions() as s:
        records = s.scalars(select(Record)).all()
        assert records
        for rec in records:
            assert rec.leaf_hash == leaf_hash(rec.canonical, "sm3").hex()
            assert rec.leaf_hash != leaf_hash(rec.canonical).hex()
        batches = s.scalars(select(Batch).order_by(Batch.seq)).all()
        assert batches and all(b.status == "anchored" for b in batches)
        client = RegistryClient(world.chain.rpc_url, world.chain.registry,
                                world.state.settings.chain.private_key.get_secret_value())
        for b in batches:
            leaves = s.scalars(batch_leaf_hashes(b.seq)).all()
            root = merkle_root([bytes.fromhex(h) for h in leaves], "sm3")
            assert b.root == root.hex()
            assert root != merkle_root([bytes.fromhex(h) for h in leaves])
            info = client.anchor_of(root)  # the contract holds the 32-byte SM3 root unchanged
            assert info is not None and info.seq == b.seq and info.leaf_count == len(leaves)
        assert s.get(KeyValue, loghash.STATE_KEY).value == "sm3"  # type: ignore[union-attr]


def test_files_are_named_by_sha256_and_sm3(world: World) -> None:
    r = world.lab.get(f"/api/v1/records/{world.contract}/proof")
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof["hash"] == "sm3"
    [entry] = proof["record"]["files"]
    assert entry["sm3"] == sm3(TINY_PDF) and len(entry["sha256"]) == 64
    with world.state.sessions() as s:
        sealed = s.scalars(select(Record).where(Record.code == world.code,
                                                Record.type == "report")).all()
    files = [f for rec in sealed for f in json.loads(rec.canonical)["files"]]
    by_role = {f["role"]: f for f in files}
    assert by_role["original_pdf"]["sm3"] == sm3(world.pdf)
    signed = world.state.blobs.get(by_role["signed_pdf"]["sha256"])
    assert by_role["signed_pdf"]["sm3"] == sm3(signed)


def test_bundle_says_sm3_and_verifies_without_the_service(world: World, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    bundle = world.bundle(tmp_path)
    manifest = _manifest(bundle)
    assert manifest["hash"] == "sm3"
    assert manifest["proofs"] and all(p["hash"] == "sm3" for p in manifest["proofs"])
    types = {p["record"]["type"] for p in manifest["proofs"]}
    assert {"contract", "sample", "seal", "witness", "receipt", "test_record", "report"} <= types
    keys = [p["record"]["body"]["witness_key"] for p in manifest["proofs"]
            if p["record"]["type"] in ("seal", "witness")]
    assert len(keys) == 2 and all(k["algorithm"] == "sm2" for k in keys)
    with open_bundle(bundle.read_bytes()) as opened:
        result = verify_bundle(opened, RpcClient(world.chain.rpc_url), world.pins(),
                               trust_roots=None)
    signatures = [c for c in result.checks if c.name == "witness_signature"]
    assert len(signatures) == 2 and all(c.ok and "sm2 signature verifies" in c.detail
                                        for c in signatures), signatures
    capsys.readouterr()
    # verify_main reads only the bundle, the chain and the roots: the service is not asked
    assert world.verify(bundle) == 0, capsys.readouterr().out
    # fed as the other kind: the manifest and every proof relabelled SHA-256
    def as_sha256(m: dict[str, Any]) -> dict[str, Any]:
        m.pop("hash")
        for p in m["proofs"]:
            p.pop("hash")
        return m

    relabelled = _rewrite(bundle, tmp_path / "as-sha256.zip", as_sha256)
    capsys.readouterr()
    assert world.verify(relabelled) == 1
    out = capsys.readouterr().out
    assert "log hash" in out and "sha256" in out
    # a manifest that says SM3 over proofs that do not: refused as mixed
    def mixed(m: dict[str, Any]) -> dict[str, Any]:
        m["proofs"][0].pop("hash")
        return m

    assert world.verify(_rewrite(bundle, tmp_path / "mixed.zip", mixed)) in (1, 2)


def test_the_public_page_checks_sm3_records(world: World) -> None:
    r = world.lab.http.get(f"/api/v1/public/reports/{world.code}")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["status"] == "genuine", data  # every record re-hashed with SM3 and proven
    assert data["anchor"] is not None and data["anchor"]["tx_hash"]


def test_the_sealed_qr_is_signed_with_sm2(world: World, tmp_path: Path) -> None:
    with world.state.sessions() as s:
        sealed = [json.loads(r.canonical) for r in s.scalars(
            select(Record).where(Record.code == world.code, Record.type == "report"))]
    (record,) = [r for r in sealed if r["body"].get("stage") == "sealed"]
    assert record["body"]["qr"]["kid"] == world.qr_kid
    signed_sha = next(f["sha256"] for f in record["files"] if f["role"] == "signed_pdf")
    (url,) = qr_texts(render_page(world.state.blobs.get(signed_sha), 0, 150))
    signed = decode_payload(url)
    assert signed.alg == -70001 and signed.kid_hex == world.qr_kid
    r = world.lab.http.get("/ca/trust-list.json")
    assert r.status_code == 200
    assert [k["alg"] for k in r.json()["keys"]][-1] == "SM2"
    result = verify_qr_text(url, parse_trust_list(r.content))
    assert result.bottom_line, result.checks
    path = url.split("://", 1)[1].split("/", 1)[1]
    page = world.lab.http.get("/" + path)
    assert page.status_code == 200 and 'data-signature="ok"' in page.text
    trust = tmp_path / "trust.json"
    trust.write_bytes(r.content)
    out = run_offline("qr", url, "--trust-list", str(trust))
    assert out.returncode == 0 and "SM2" in out.stdout, out.stdout + out.stderr


def test_the_evidence_certificate_is_co_signed_with_sm2(world: World, tmp_path: Path) -> None:
    r = world.lab.get(f"/api/v1/reports/{world.code}/certificate")
    assert r.status_code == 200, r.text
    pdf = r.content
    roots = [c.public_bytes(serialization.Encoding.DER) for c in
             x509.load_pem_x509_certificates(world.roots.read_bytes())]
    check = check_certificate_sm2(pdf, roots)
    assert check is not None and check.ok, check
    doc = read_attachment(pdf)
    assert doc is not None
    statement = doc["statement"]
    assert statement["code"] == world.code
    bundle_leaves = {p["leaf_hash"] for p in _manifest(world.bundle(world.roots.parent))["proofs"]}
    assert {r["leaf_hash"] for r in statement["records"]} == bundle_leaves
    # the PAdES signature still covers the whole file, the attachment included
    (sig,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    vc = ValidationContext(trust_roots=load_certificates(world.roots.read_bytes()),
                           allow_fetching=False)
    status = validate_pdf_signature(sig, vc, ts_validation_context=vc)
    assert status.bottom_line and status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    nss = tmp_path / "nss"
    nss.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{nss}", "-n", "root", "-t", "C,C,C",
                    "-i", str(world.roots)], check=True)
    out = pdfsig(pdf, f"sql:{nss}", tmp_path)
    assert "Signature Validation: Signature is Valid." in out, out
    assert "Total document signed" in out, out
    # the public verify still recognises it as a genuine certificate
    r = world.lab.http.post("/api/v1/public/verify", files={"file": ("c.pdf", pdf,
                                                                       "application/pdf")})
    assert r.status_code == 200 and r.json()["verdict"] == "genuine", r.text
    # a changed statement under the same signature fails
    changed = {**doc, "statement": {**statement, "status": "revoked"}}
    assert not check_statement(changed, roots).ok
    assert not check_statement(doc, []).ok  # no trusted root


def test_revocation_on_an_sm3_log(world: World, tmp_path: Path) -> None:
    r = world.lab.post(f"/api/v1/reports/{world.code}/revocation",
                       json_body={"reason": "报告信息有误", "superseded_by": None})
    assert r.status_code == 201, r.text
    anchor_until_drained(world.worker)
    anchor_until_drained(world.worker)
    bundle = world.bundle(tmp_path, "revoked.zip")
    revocation = _manifest(bundle)["revocation"]
    assert revocation["hash"] == "sm3" and revocation["record"]["type"] == "revocation"
    assert world.verify(bundle) == 3


def test_the_log_hash_is_pinned(tmp_path: Path, hardhat: DevChain) -> None:
    chain = new_chain(hardhat)
    url = f"sqlite:///{tmp_path / 'pin.db'}"
    state = state_with_chain(tmp_path, url, chain, evidence={"hash": "sm3"})
    state.close()
    with pytest.raises(IntegrityFault) as err:
        build_state(make_settings(tmp_path, url), chain=chain)
    assert err.value.code == "log_hash_mismatch" and "'sm3'" in str(err.value)
    # a database of SHA-256 records from before the setting: it stays SHA-256
    old = tmp_path / "old"
    old.mkdir()
    old_url = f"sqlite:///{old / 'old.db'}"
    state = state_with_chain(old, old_url, chain)
    lab = add_lab(state, 1608)
    assert lab.institution is not None
    seed_record(state, lab.institution, "project")
    with session_scope(state.sessions) as s:
        s.delete(s.get(KeyValue, loghash.STATE_KEY))
    state.close()
    with pytest.raises(IntegrityFault) as err:
        build_state(make_settings(old, old_url, evidence={"hash": "sm3"}), chain=chain)
    assert err.value.code == "log_hash_mismatch"
    engine = make_engine(url)
    try:
        with pytest.raises(IntegrityFault):  # the worker would anchor roots of the wrong kind
            AnchorWorker(make_settings(tmp_path, url), engine, chain)
    finally:
        engine.dispose()
