"""The verifier re-checks the witness signatures of seals and witness records from the
bundle alone (R7, R8): valid ones pass, a forged or mismatched one fails naming the
record, an unsigned one warns; service intake uses the same verification."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from service.domain import seals
from tests.proof_builder import ancestry_records, build_proofs, file_sha, make_bundle
from verifier.bundle import open_bundle
from verifier.canonical import canonicalize
from verifier.merkle import record_leaf_hash
from verifier.models import Check
from verifier.witness import witness_signature_check

PHOTO = b"\xff\xd8\xff\xe0 sealing photo"


def _spki(key: Any) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _sign(key: Any, payload: dict[str, Any]) -> str:
    message = canonicalize(payload)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return base64.b64encode(key.sign(message)).decode()
    return base64.b64encode(key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()


def _records(mutate: Any = None) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    records = ancestry_records()
    sample = next(r for r in records if r["type"] == "sample")
    code = sample["body"]["sample_code"]
    media = {
        "type": "media", "v": 1, "id": "01PHOTO", "institution": sample["institution"],
        "created_at": "2026-11-22T09:40:00Z", "parents": [],
        "files": [{"role": "media", "sha256": file_sha(PHOTO), "size": len(PHOTO),
                   "media_type": "image/jpeg"}],
        "body": {"kind": "image"},
    }
    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    seal_signed = seals.seal_payload(code, "2026-11-22T09:41:00+08:00", "标养室", [file_sha(PHOTO)])
    witness_signed = seals.witness_payload(
        [code], "2026-11-22T09:30:00+08:00", "现场", ["sampling"], [file_sha(PHOTO)]
    )
    seal_body = {
        "sample_code": code, "signed": seal_signed, "signature": _sign(ed, seal_signed),
        "witness_key": {"algorithm": "ed25519", "public_key": _spki(ed)},
    }
    witness_body = {
        "signed": witness_signed, "signature": _sign(p256, witness_signed),
        "witness_key": {"algorithm": "ecdsa-p256", "public_key": _spki(p256)},
    }
    if mutate is not None:
        mutate(seal_body, witness_body)
    parents = [record_leaf_hash(sample).hex(), record_leaf_hash(media).hex()]
    seal = {**media, "type": "seal", "id": "01SEAL", "parents": parents, "files": [],
            "body": seal_body}
    witness = {**media, "type": "witness", "id": "01WITNESS", "parents": parents,
               "files": [], "body": witness_body}
    files = {file_sha(b"%PDF-1.7 signed report\n"): b"%PDF-1.7 signed report\n",
             file_sha(b"%PDF-1.7 contract"): b"%PDF-1.7 contract", file_sha(PHOTO): PHOTO}
    return [*records, media, seal, witness], files


def _run(mutate: Any = None) -> dict[str, Check]:
    records, files = _records(mutate)
    proofs, _ = build_proofs(records)
    bundle = open_bundle(make_bundle(proofs, files))
    checks = witness_signature_check()(bundle)
    assert len(checks) == 2
    return {c.record_type or "": c for c in checks}


def test_valid_signatures_pass() -> None:
    checks = _run()
    assert checks["seal"].ok and not checks["seal"].warning
    assert checks["witness"].ok and "ecdsa-p256" in checks["witness"].detail


def test_forged_or_mismatched_signatures_fail() -> None:
    def forge(seal: dict[str, Any], witness: dict[str, Any]) -> None:
        seal["signed"] = {**seal["signed"], "place": "别处"}  # edited after signing
        witness["signature"] = base64.b64encode(b"\x00" * 64).decode()

    checks = _run(forge)
    assert not checks["seal"].ok and "does not verify" in checks["seal"].detail
    assert checks["seal"].record_id == "01SEAL"
    assert not checks["witness"].ok

    def other_code(seal: dict[str, Any], _: dict[str, Any]) -> None:
        seal["sample_code"] = "YP-OTHER"

    assert "sample code" in _run(other_code)["seal"].detail

    def unlisted_image(seal: dict[str, Any], witness: dict[str, Any]) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        seal["signed"] = {**seal["signed"], "images": ["ab" * 32]}
        seal["signature"] = _sign(key, seal["signed"])
        seal["witness_key"] = {"algorithm": "ed25519", "public_key": _spki(key)}

    failed = _run(unlisted_image)["seal"]
    assert not failed.ok and "not among the record's media" in failed.detail


def test_unsigned_record_warns() -> None:
    def strip(seal: dict[str, Any], _: dict[str, Any]) -> None:
        seal.clear()

    check = _run(strip)["seal"]
    assert check.ok and check.warning and "no witness signature" in check.detail
