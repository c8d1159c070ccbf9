"""The verifier's library entry points tell the whole truth: ``verify_bundle_file`` runs the
sealed-PDF, witness-signature and batch-sequence checks the CLI runs, without the caller
asking, and the caller must say which roots the sealed PDF is checked against.

Bundles are built without the service (``tests.proof_builder``) around a really sealed PDF
(``tests.fixtures.signer``); the chain is the in-memory ``FakeChain``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer.seal import SealedPdf
from tests.fixtures.signer import TEST_CODE, SignerEnv, flip_signed_byte
from tests.proof_builder import (
    CHAIN_ID,
    REGISTRY,
    FakeChain,
    ancestry_files,
    build_proofs,
    make_bundle,
    sealed_report_records,
    signed_seal_record,
)
from verifier.bundle import verify_bundle_file
from verifier.models import BundleVerification
from verifier.proof import Pins

PINNED = Pins(chain_id=CHAIN_ID, registry=REGISTRY)


def sealed_bundle(
    tmp_path: Path, pdf: bytes, *, seal: str | None = None, **manifest_fields: Any
) -> tuple[Path, FakeChain]:
    """A bundle file of the usual ancestry whose report names ``pdf`` as its sealed PDF
    (with a seal record of the sample, ``seal`` "signed" or "forged"), anchored as one
    batch on the FakeChain returned; ``manifest_fields`` are added to the manifest."""
    records = sealed_report_records(pdf, TEST_CODE)
    if seal is not None:
        sample = next(r for r in records if r["type"] == "sample")
        records.insert(-1, signed_seal_record(sample, forged=seal == "forged"))
    proofs, _ = build_proofs(records)
    chain = FakeChain()
    chain.anchor(proofs[0])
    manifest = {"format": "jianzheng-bundle/1", "code": TEST_CODE,
                "report_record_id": "01REPORT", "proofs": proofs, "revocation": None,
                **manifest_fields}
    path = tmp_path / "bundle.zip"
    path.write_bytes(make_bundle(proofs, ancestry_files(pdf), manifest=manifest))
    return path, chain


def failures(result: BundleVerification) -> list[tuple[str, str | None, str | None]]:
    return [(f.check, f.record_type, f.record_id) for f in result.findings
            if f.severity == "error"]


def foreign_root() -> bytes:
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


def test_sealed_bundle_passes_against_pinned_roots(
    tmp_path: Path, sealed_3p: SealedPdf, signer_env: SignerEnv
) -> None:
    path, chain = sealed_bundle(tmp_path, sealed_3p.data)
    result = verify_bundle_file(path, chain, PINNED, trust_roots=[signer_env.roots_pem])
    assert result.bottom_line, result.findings
    assert result.findings == ()
    statuses = [(c.name, c.status, c.record_id) for c in result.checks
                if c.name in ("sealed_pdf", "batch_sequence")]
    assert statuses == [("sealed_pdf", "PASS", "01REPORT"), ("batch_sequence", "PASS", None)]
    assert "chains to a pinned root" in result.checks[-2].detail


@pytest.mark.parametrize("pinned_roots", [True, False])
def test_tampered_sealed_pdf_fails_a_library_call(
    tmp_path: Path, sealed_3p: SealedPdf, signer_env: SignerEnv, pinned_roots: bool
) -> None:
    """The record (anchored) names the tampered file, so every hash and file check passes:
    only the sealed-PDF check sees it, with or without pinned roots."""
    forged = flip_signed_byte(sealed_3p.data)
    path, chain = sealed_bundle(tmp_path, forged)
    roots = [signer_env.roots_pem] if pinned_roots else None
    result = verify_bundle_file(path, chain, PINNED, trust_roots=roots)
    assert not result.bottom_line
    assert failures(result) == [("sealed_pdf", "report", "01REPORT")]
    (finding,) = (f for f in result.findings if f.severity == "error")
    assert "digest_mismatch" in finding.message


def test_sealed_pdf_signed_under_other_roots_fails(
    tmp_path: Path, sealed_3p: SealedPdf
) -> None:
    path, chain = sealed_bundle(tmp_path, sealed_3p.data)
    result = verify_bundle_file(path, chain, PINNED, trust_roots=[foreign_root()])
    assert failures(result) == [("sealed_pdf", "report", "01REPORT")]
    assert "untrusted_certificate" in result.findings[0].message


def test_without_roots_the_result_says_so(tmp_path: Path, sealed_3p: SealedPdf) -> None:
    path, chain = sealed_bundle(tmp_path, sealed_3p.data)
    result = verify_bundle_file(path, chain, PINNED, trust_roots=None)
    assert result.bottom_line
    assert [(f.check, f.severity) for f in result.findings] == [("sealed_pdf_trust", "warning")]
    assert "signer NOT checked" in next(c.detail for c in result.checks
                                        if c.name == "sealed_pdf")


def test_trust_roots_must_be_said(tmp_path: Path, sealed_3p: SealedPdf) -> None:
    path, chain = sealed_bundle(tmp_path, sealed_3p.data)
    with pytest.raises(TypeError, match="trust_roots"):
        verify_bundle_file(path, chain, PINNED)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="sequence"):
        verify_bundle_file(path, chain, PINNED, trust_roots=foreign_root())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no certificate"):
        verify_bundle_file(path, chain, PINNED, trust_roots=[])
    with pytest.raises(ValueError, match="unreadable trust root"):
        verify_bundle_file(path, chain, PINNED, trust_roots=[b"not a certificate"])
    assert chain.calls == 0  # refused before anything was read from the chain


@pytest.mark.parametrize("forged", [False, True])
def test_broken_witness_signature_fails_a_library_call(
    tmp_path: Path, sealed_3p: SealedPdf, signer_env: SignerEnv, forged: bool
) -> None:
    path, chain = sealed_bundle(tmp_path, sealed_3p.data, seal="forged" if forged else "signed")
    result = verify_bundle_file(path, chain, PINNED, trust_roots=[signer_env.roots_pem])
    (check,) = (c for c in result.checks if c.name == "witness_signature")
    if forged:
        assert not result.bottom_line
        assert failures(result) == [("witness_signature", "seal", "01SEAL")]
        assert "does not verify" in check.detail
    else:
        assert result.bottom_line, result.findings
        assert check.status == "PASS" and "ed25519 signature verifies" in check.detail


def test_leaves_deleted_from_an_anchored_batch_fail_a_library_call(
    tmp_path: Path, sealed_3p: SealedPdf, signer_env: SignerEnv
) -> None:
    """The manifest's ``batches`` says the service now holds 5 leaves of the batch anchored
    with 6, and ``unproven`` names the record it lost: the batch-sequence check fails."""
    root = build_proofs(sealed_report_records(sealed_3p.data, TEST_CODE))[1].hex()
    path, chain = sealed_bundle(
        tmp_path, sealed_3p.data,
        batches=[{"seq": 1, "root": root, "leaf_count": 6, "stored_leaf_count": 5}],
        unproven=[{"record_id": "01LOST", "type": "test_record", "batch_seq": 1,
                   "reason": "leaf missing from its batch"}],
    )
    result = verify_bundle_file(path, chain, PINNED, trust_roots=[signer_env.roots_pem])
    assert not result.bottom_line
    assert failures(result) == [("batch_sequence", None, None),
                                ("batch_sequence", "test_record", "01LOST")]
    details = [f.message for f in result.findings]
    assert "1 leaf/leaves of this anchored batch were deleted from the database" in details[0]
    assert "the service's database lost it" in details[1]
