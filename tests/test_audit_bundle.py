"""`GET /api/v1/audit/reports/{code}/bundle`: who may fetch it, what it holds, when it is
pending, and the verifier's extra bundle checks (sealed PDF, trust roots) on real bundles.

One world per module: the app in process (signed requests through the test client), a
registry of our own on the session's Hardhat node, the real anchoring worker run to drain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.worker import AnchorWorker, anchor_until_drained
from service.client import JianzhengClient
from service.state import ServiceState
from signer.ca import DevCA
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import state_with_chain
from tests.labkit import add_auditor, add_lab, client_for, make_app
from tests.public_kit import Built, issue_report
from verifier.bundle import open_bundle, verify_bundle
from verifier.bundle_checks import read_trust_roots, sealed_pdf_check
from verifier.chain import RpcClient
from verifier.cli import main as verify_main
from verifier.models import BundleVerification
from verifier.proof import Pins

pytestmark = pytest.mark.chain


@dataclass
class World:
    state: ServiceState
    chain: ChainInfo
    worker: AnchorWorker
    lab: JianzhengClient
    auditor: JianzhengClient
    institution: str
    genuine: Built
    revoked: Built

    def bundle(self, code: str) -> Any:
        return self.auditor.get(f"/api/v1/audit/reports/{code}/bundle")

    def pins(self) -> Pins:
        return Pins(chain_id=self.chain.chain_id, registry=self.chain.registry)


@pytest.fixture(scope="module")
def world(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("audit")
    chain = new_chain(hardhat)
    state = state_with_chain(tmp, f"sqlite:///{tmp / 'jz.db'}", chain,
                             public={"rate_limit_per_minute": 0})
    app = make_app(state)
    lab_account = add_lab(state, 63)
    assert lab_account.institution is not None
    lab = client_for(app, lab_account)
    auditor = client_for(app, add_auditor(state))
    worker = AnchorWorker(state.settings, state.engine, chain)
    genuine = issue_report(state, lab, lab_account.institution, "A1")
    revoked = issue_report(state, lab, lab_account.institution, "A2")
    w = World(state, chain, worker, lab, auditor, lab_account.institution, genuine, revoked)
    # before the worker ran: everything pending
    r = w.bundle(genuine.code)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and body["code"] == genuine.code
    assert r.headers["Retry-After"] == str(body["retry_after_s"])
    assert {p["record_id"] for p in body["pending"]} >= set(genuine.record_ids.values())
    anchor_until_drained(worker)
    yield w
    state.engine.dispose()


def _errors(result: BundleVerification) -> list[tuple[str, str | None, str | None]]:
    return [(f.check, f.record_type, f.record_id) for f in result.findings
            if f.severity == "error"]


def _kit_witness_failures(built: Built) -> list[tuple[str, str | None, str | None]]:
    """What verification says of every bundle of this world besides its own findings.

    ``build_chain`` (tests/public_kit.py) writes its seal and witness records straight to
    the database, past intake's signature check: they carry a ``signed`` payload but no
    signature or key, so the ``witness_signature`` check fails them. ``jianzheng-verify``
    has always run that check; ``verify_bundle`` runs it too now."""
    return [("witness_signature", "seal", built.record_ids["seal"]),
            ("witness_signature", "witness", built.record_ids["witness"])]


def _open(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        files = {n[len("files/"):]: zf.read(n) for n in zf.namelist() if n.startswith("files/")}
    return manifest, files


def test_only_auditors_get_bundles(world: World) -> None:
    code = world.genuine.code
    r = world.lab.get(f"/api/v1/audit/reports/{code}/bundle")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert r.headers["content-type"].startswith("application/problem+json")
    anon = TestClient(make_app(world.state)).get(f"/api/v1/audit/reports/{code}/bundle")
    assert anon.status_code == 401 and anon.json()["code"] == "auth_missing"
    for bad in ("44030026AAAAAAAAAAAAAAA", "not-a-code"):
        r = world.bundle(bad)
        assert r.status_code == 404 and r.json()["code"] == "unknown_code", r.text


def test_bundle_holds_the_whole_ancestry_and_every_file(world: World) -> None:
    built = world.genuine
    spaced = "-".join(built.code[i:i + 4] for i in range(0, len(built.code), 4)).lower()
    r = world.bundle(spaced)  # any accepted form of the code
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f"jianzheng-bundle-{built.code}.zip" in r.headers["content-disposition"]
    manifest, files = _open(r.content)
    assert manifest["format"] == "jianzheng-bundle/1" and manifest["code"] == built.code
    assert manifest["report_record_id"] == built.record_ids["report_pdf"]
    assert manifest["revocation"] is None and manifest["unproven"] == []
    ids = [p["record"]["id"] for p in manifest["proofs"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(built.record_ids.values())  # chain + 3 report records, no other
    assert all(p["format"] == "jianzheng-proof/1" for p in manifest["proofs"])
    named = {f["sha256"] for p in manifest["proofs"] for f in p["record"]["files"]}
    assert set(files) == named and len(named) == 3  # contract, original and sealed PDF
    assert all(hashlib.sha256(data).hexdigest() == sha for sha, data in files.items())
    assert [b["seq"] for b in manifest["batches"]] == sorted({p["batch"]["seq"]
                                                              for p in manifest["proofs"]})
    for batch in manifest["batches"]:
        assert batch["stored_leaf_count"] == batch["leaf_count"]
        assert batch["stored_root"] == batch["root"]

    roots = DevCA(world.state.settings.ca_dir).roots_pem()
    with open_bundle(r.content) as bundle:
        result = verify_bundle(bundle, RpcClient(world.chain.rpc_url), world.pins(),
                               trust_roots=[roots])
    assert _errors(result) == _kit_witness_failures(built)
    assert result.status == "genuine"
    passed = {c.name for c in result.checks if c.status == "PASS"}
    assert {"record_files", "parent_links", "sealed_pdf", "batch_sequence"} <= passed


def test_bundle_proofs_are_built_in_one_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan_bundle asks the batched proof builder once for every record (no N+1)."""
    from service.domain import bundle, proofs

    calls: list[int] = []
    real = proofs.build_proofs

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    def refused(*_: Any, **__: Any) -> Any:
        raise AssertionError("one build_proof per record")

    monkeypatch.setattr(bundle, "build_proofs", counted)
    monkeypatch.setattr(proofs, "build_proof", refused)
    with world.state.sessions() as session:
        plan = bundle.plan_bundle(session, world.genuine.code, world.chain)
    assert calls == [len(world.genuine.record_ids)]
    assert len(plan.proofs) == len(world.genuine.record_ids)


def test_revoked_bundle_waits_for_the_chain(world: World) -> None:
    built = world.revoked
    r = world.lab.post(f"/api/v1/reports/{built.code}/revocation",
                       json_body={"reason": "报告编号重复", "superseded_by": None})
    assert r.status_code == 201, r.text
    r = world.bundle(built.code)
    assert r.status_code == 202
    assert [p["type"] for p in r.json()["pending"]] == ["revocation"]
    anchor_until_drained(world.worker)
    anchor_until_drained(world.worker)  # the revoke transaction follows the anchored batch
    r = world.bundle(built.code)
    assert r.status_code == 200, r.text
    manifest, _ = _open(r.content)
    revocation = manifest["revocation"]
    assert revocation["record"]["type"] == "revocation"
    assert revocation["record"]["parents"] == [
        p["leaf_hash"] for p in manifest["proofs"]
        if p["record"]["id"] == built.record_ids["report_pdf"]
    ]
    with open_bundle(r.content) as bundle:
        result = verify_bundle(bundle, RpcClient(world.chain.rpc_url), world.pins(),
                               trust_roots=None)
    assert _errors(result) == _kit_witness_failures(built)
    assert result.status == "revoked"


def test_missing_blob_is_left_out_and_named(world: World) -> None:
    built = world.genuine
    with world.state.sessions() as s:
        from sqlalchemy import text

        sha = s.execute(text("SELECT sha256 FROM record_files WHERE record_id = :id"),
                        {"id": built.record_ids["contract"]}).scalar_one()
    path = world.state.blobs.path(sha)
    moved = path.with_suffix(".away")
    path.rename(moved)
    try:
        r = world.bundle(built.code)
        assert r.status_code == 200
        _, files = _open(r.content)
        assert sha not in files
        with open_bundle(r.content) as bundle:
            result = verify_bundle(bundle, RpcClient(world.chain.rpc_url), world.pins(),
                                   trust_roots=None)
        assert _errors(result) == [("record_files", "contract", built.record_ids["contract"]),
                                   *_kit_witness_failures(built)]
    finally:
        moved.rename(path)


def _foreign_root() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone else's root")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_sealed_pdf_check_against_pinned_roots(world: World, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    r = world.bundle(world.genuine.code)
    assert r.status_code == 200
    bundle_path = tmp_path / "b.zip"
    bundle_path.write_bytes(r.content)
    ours = tmp_path / "ours.pem"
    ours.write_bytes(DevCA(world.state.settings.ca_dir).roots_pem())
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(_foreign_root())
    pdf_id = world.genuine.record_ids["report_pdf"]

    with open_bundle(bundle_path) as bundle:
        good = sealed_pdf_check(read_trust_roots(ours))(bundle)
        bad = sealed_pdf_check(read_trust_roots(foreign))(bundle)
        loose = sealed_pdf_check(None)(bundle)
    assert [(c.name, c.status, c.record_id) for c in good] == [("sealed_pdf", "PASS", pdf_id)]
    assert [(c.name, c.status, c.record_id) for c in bad] == [("sealed_pdf", "FAIL", pdf_id)]
    assert "untrusted_certificate" in bad[0].detail
    assert [(c.name, c.status) for c in loose] == [("sealed_pdf_trust", "WARN"),
                                                   ("sealed_pdf", "PASS")]

    args = [str(bundle_path), "--rpc", world.chain.rpc_url, "--registry", world.chain.registry,
            "--chain-id", str(world.chain.chain_id)]
    assert verify_main([*args, "--trust-roots", str(foreign)]) == 1
    assert "FAIL  sealed_pdf" in capsys.readouterr().out
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificates here\n")
    assert verify_main([*args, "--trust-roots", str(empty)]) == 2
    assert verify_main([*args, "--trust-roots", str(tmp_path / "absent.pem")]) == 2
    capsys.readouterr()
