"""jianzheng-verify against a real Hardhat node and a freshly deployed EvidenceRegistry."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.anchoring.contract import RegistryClient
from signer.seal import SealedPdf
from tests.fixtures.chain import DevChain
from tests.fixtures.signer import TEST_CODE, SignerEnv, flip_signed_byte
from tests.proof_builder import (
    CODE,
    ancestry_files,
    ancestry_records,
    build_proofs,
    file_sha,
    make_bundle,
    sealed_report_records,
    signed_seal_record,
)
from verifier.bundle import verify_bundle_file
from verifier.bundle_checks import read_trust_roots
from verifier.chain import CachingChain, RpcClient, report_subject
from verifier.cli import main
from verifier.merkle import record_leaf_hash
from verifier.proof import Pins

pytestmark = pytest.mark.chain

PDF = b"%PDF-1.7 signed report\n"
CONTRACT_PDF = b"%PDF-1.7 contract"
VERIFY = Path(sys.executable).parent / "jianzheng-verify"


@dataclass
class Anchored:
    chain: DevChain
    registry: str
    client: RegistryClient
    proofs: list[dict[str, Any]]


def anchor_batch(client: RegistryClient, records: list[dict[str, Any]], chain_id: int,
                 registry: str) -> list[dict[str, Any]]:
    """Anchor the records' tree as the next batch; proofs filled from the chain's answers."""
    draft, root = build_proofs(records)
    seq = client.batch_count() + 1
    signed = client.build_anchor_tx(seq, root, len(records), client.pending_nonce())
    tx_hash = client.send_raw(signed.raw)
    receipt = client.wait_receipt(tx_hash)
    info = client.anchor_of(root)
    assert info is not None and info.block_number == receipt.block_number
    proofs, _ = build_proofs(records, seq=seq, chain_id=chain_id, registry=registry,
                             tx_hash=tx_hash, block_number=info.block_number,
                             block_timestamp=info.timestamp)
    return proofs


@pytest.fixture
def anchored(hardhat: DevChain, fresh_registry: str) -> Anchored:
    client = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    proofs = anchor_batch(client, ancestry_records(PDF), hardhat.chain_id, fresh_registry.lower())
    return Anchored(hardhat, fresh_registry, client, proofs)


def pins(a: Anchored, registry: str | None = None) -> list[str]:
    return ["--rpc", a.chain.rpc_url, "--registry", registry or a.registry,
            "--chain-id", str(a.chain.chain_id)]


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def lines(out: str, status: str, check: str) -> list[str]:
    return [line for line in out.splitlines() if line.split()[:2] == [status, check]]


def test_rpc_client_reads_the_registry(anchored: Anchored) -> None:
    rpc = RpcClient(anchored.chain.rpc_url)
    assert rpc.chain_id() == anchored.chain.chain_id
    assert rpc.batch_count(anchored.registry) == 1
    root = bytes.fromhex(anchored.proofs[0]["batch"]["root"])
    info = rpc.anchor_of(anchored.registry, root)
    assert info is not None and (info.seq, info.leaf_count) == (1, 6)
    assert rpc.anchor_of(anchored.registry, b"\x01" * 32) is None
    assert rpc.revocation_of(anchored.registry, report_subject(CODE)) is None
    receipt = rpc.get_transaction_receipt(anchored.proofs[0]["anchor"]["tx_hash"])
    assert receipt is not None and receipt.status == 1 and len(receipt.logs) == 1
    block = rpc.get_block(info.block_number)
    assert block is not None and block.timestamp == info.timestamp
    assert rpc.get_transaction_receipt("0x" + "00" * 32) is None


def test_anchored_proof_passes(anchored: Anchored, tmp_path: Path) -> None:
    path = write(tmp_path, "report.proof.json", anchored.proofs[-1])
    report = tmp_path / "out.json"
    run = subprocess.run([str(VERIFY), str(path), *pins(anchored), "--json", str(report)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    for check in ("record_hash", "inclusion", "anchor", "anchor_event", "chain_id", "registry",
                  "revocation"):
        assert lines(run.stdout, "PASS", check), (check, run.stdout)
    assert "FAIL" not in run.stdout and "WARN" not in run.stdout
    assert "GENUINE" in run.stdout
    assert json.loads(report.read_text("utf-8"))["results"][0]["status"] == "genuine"


def test_unpinned_proof_passes_with_warning(anchored: Anchored, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "sample.proof.json", anchored.proofs[3])
    assert main([str(path), "--rpc", anchored.chain.rpc_url]) == 0
    out = capsys.readouterr().out
    assert lines(out, "WARN", "trust") and lines(out, "WARN", "registry")
    assert lines(out, "PASS", "anchor_event")


def test_changed_record_field_fails(anchored: Anchored, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(json.dumps(anchored.proofs[-1]))
    doc["record"]["body"]["conclusion"] = "fail"
    assert main([str(write(tmp_path, "p.json", doc)), *pins(anchored)]) == 1
    out = capsys.readouterr().out
    assert lines(out, "FAIL", "record_hash")
    assert lines(out, "PASS", "anchor")  # the batch itself is anchored
    assert "FAILED" in out


def test_wrong_registry_fails(anchored: Anchored, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.json", anchored.proofs[0])
    # The session registry is a real EvidenceRegistry, but not the one that anchored this batch.
    assert main([str(path), *pins(anchored, registry=anchored.chain.registry)]) == 1
    out = capsys.readouterr().out
    assert lines(out, "FAIL", "registry")
    assert any("never anchored" in line for line in lines(out, "FAIL", "anchor"))


def test_root_never_anchored_fails(anchored: Anchored, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    records = ancestry_records(b"%PDF-1.7 another report\n")
    proofs, _ = build_proofs(records, chain_id=anchored.chain.chain_id,
                             registry=anchored.registry.lower(),
                             tx_hash=anchored.proofs[0]["anchor"]["tx_hash"],
                             block_number=anchored.proofs[0]["anchor"]["block_number"],
                             block_timestamp=anchored.proofs[0]["anchor"]["block_timestamp"])
    assert main([str(write(tmp_path, "p.json", proofs[0])), *pins(anchored)]) == 1
    out = capsys.readouterr().out
    assert any("never anchored" in line for line in lines(out, "FAIL", "anchor"))
    assert any("anchored other roots" in line for line in lines(out, "FAIL", "anchor_event"))


def test_bundle_passes_then_revoked_exits_3(anchored: Anchored, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    files = {file_sha(PDF): PDF, file_sha(CONTRACT_PDF): CONTRACT_PDF}
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(make_bundle(anchored.proofs, files))
    assert main([str(bundle), *pins(anchored)]) == 0
    out = capsys.readouterr().out
    assert lines(out, "PASS", "parent_links") and lines(out, "PASS", "revocation")

    report = anchored.proofs[-1]["record"]
    revocation_record = {
        "type": "revocation", "v": 1, "id": "01REVOKE", "institution": report["institution"],
        "created_at": "2026-11-23T10:00:00Z", "parents": [record_leaf_hash(report).hex()],
        "files": [], "body": {"reason": "数据录入错误", "superseded_by": None},
    }
    revocation = anchor_batch(anchored.client, [revocation_record], anchored.chain.chain_id,
                              anchored.registry.lower())[0]
    anchored.client.revoke(report_subject(CODE), bytes.fromhex(revocation["leaf_hash"]))

    bundle.write_bytes(make_bundle(anchored.proofs, files, revocation=revocation))
    assert main([str(bundle), *pins(anchored)]) == 3
    out = capsys.readouterr().out
    assert lines(out, "WARN", "revocation") and lines(out, "PASS", "revocation_record")
    assert "REVOKED" in out
    # The chain decides, whatever the bundle says: without the revocation record still 3.
    bundle.write_bytes(make_bundle(anchored.proofs, files))
    assert main([str(bundle), *pins(anchored)]) == 3
    capsys.readouterr()


@pytest.mark.parametrize("tampered", [False, True])
def test_cli_and_library_give_the_same_verdict(
    hardhat: DevChain, fresh_registry: str, tmp_path: Path, sealed_3p: SealedPdf,
    signer_env: SignerEnv, capsys: pytest.CaptureFixture[str], tampered: bool,
) -> None:
    """The same bundle, chain, pins and roots: `jianzheng-verify` and a library call of
    `verify_bundle_file` run the same checks with the same outcome, the sealed PDF's and
    the witness signature's included (tampered: a flipped byte in the signed PDF and a seal
    record whose signature is over another payload)."""
    pdf = flip_signed_byte(sealed_3p.data) if tampered else sealed_3p.data
    records = sealed_report_records(pdf, TEST_CODE)
    sample = next(r for r in records if r["type"] == "sample")
    records.insert(-1, signed_seal_record(sample, forged=tampered))
    client = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    proofs = anchor_batch(client, records, hardhat.chain_id, fresh_registry.lower())
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(make_bundle(proofs, ancestry_files(pdf), code=TEST_CODE))
    roots = tmp_path / "roots.pem"
    roots.write_bytes(signer_env.roots_pem)
    report = tmp_path / "out.json"

    exit_code = main([str(bundle), "--rpc", hardhat.rpc_url, "--registry", fresh_registry,
                      "--chain-id", str(hardhat.chain_id), "--trust-roots", str(roots),
                      "--json", str(report)])
    capsys.readouterr()
    result = verify_bundle_file(
        bundle, CachingChain(RpcClient(hardhat.rpc_url)),
        Pins(chain_id=hardhat.chain_id, registry=fresh_registry),
        trust_roots=read_trust_roots(roots),
    )

    cli_checks = [(c["status"], c["name"], c["detail"], c["record_id"], c["record_type"])
                  for c in json.loads(report.read_text("utf-8"))["results"][0]["checks"]]
    assert cli_checks == [(c.status, c.name, c.detail, c.record_id, c.record_type)
                          for c in result.all_checks]
    assert {"sealed_pdf", "witness_signature", "batch_sequence"} <= {c[1] for c in cli_checks}
    if tampered:
        assert exit_code == 1 and not result.bottom_line
        assert sorted((c[1], c[4]) for c in cli_checks if c[0] == "FAIL") == [
            ("sealed_pdf", "report"), ("witness_signature", "seal")]
    else:
        assert exit_code == 0 and result.bottom_line, result.findings
        # the seal's key has no platform certificate in the bundle (no agency verified it)
        assert [(f.check, f.record_type) for f in result.findings] == [
            ("witness_unverified", "seal")]
