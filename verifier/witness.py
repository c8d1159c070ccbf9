"""Witness signatures of electronic seals (电子封志) and witness records, re-verified from
the records alone (R7, R8): the auditor need not trust the platform's check at intake.

A seal or witness record's body holds ``signed`` (the payload the witness signed),
``signature`` (standard base64) and ``witness_key`` (``algorithm`` ``ed25519``,
``ecdsa-p256`` or ``sm2``, ``public_key`` a base64 DER SubjectPublicKeyInfo; an SM2 key may
name its ``distinguishing_id``, default ``1234567812345678``, INTERFACE §7.7). The signed
bytes are the RFC 8785 canonical JSON of ``signed``; an ECDSA or SM2 signature may be DER or
raw r||s (SM2 with SM3, GB/T 32918: verifier/sm2.py).

``witness_signature_check`` is a ``BundleCheck``: per seal and witness record of the
bundle, the signature verifies; the seal's ``sample_code`` is the signed one; and every
image the witness signed is a file of a media record among the record's parents in the
bundle, so the photos an auditor sees are the ones that were sealed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from verifier import sm2
from verifier.bundle import Bundle, BundleCheck
from verifier.canonical import canonicalize
from verifier.errors import CanonicalizationError
from verifier.models import Check, Proof

ALGORITHMS = ("ed25519", "ecdsa-p256", "sm2")
SIGNED_TYPES = ("seal", "witness")
#: Longest base64 signature or key accepted (an Ed25519/P-256 one is far shorter).
MAX_B64_CHARS = 4096


def b64(value: object, max_chars: int = MAX_B64_CHARS) -> bytes | None:
    """Standard base64 to bytes; None when it is not (or longer than `max_chars`)."""
    if not isinstance(value, str) or len(value) > max_chars:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_witness_signature(
    algorithm: str,
    public_key_der: bytes,
    message: bytes,
    sig: bytes,
    distid: bytes = sm2.DEFAULT_ID,
) -> bool:
    """True when ``sig`` is a valid signature of ``message`` by the key; never raises.
    ``distid`` is an SM2 key's distinguishing ID (ignored for the other algorithms)."""
    if algorithm == "sm2":
        return sm2.verify(public_key_der, message, sig, distid)
    try:
        key = serialization.load_der_public_key(public_key_der)
        if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, message)
            return True
        if algorithm == "ecdsa-p256" and isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                return False
            if len(sig) == 64:  # raw r || s
                sig = encode_dss_signature(
                    int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                )
            key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
            return True
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False  # e.g. an SM2 key labelled ecdsa-p256: cryptography has no SM2 curve
    return False


def witness_signature_check() -> BundleCheck:
    """A BundleCheck re-verifying every seal's and witness record's signature."""

    def witness_signatures(bundle: Bundle) -> list[Check]:
        by_leaf = {p.leaf_hash.hex(): p for p in bundle.proofs}
        checks = []
        for proof in bundle.proofs:
            if proof.record_type in SIGNED_TYPES:
                checks.append(_check_record(proof, by_leaf))
        return checks

    return witness_signatures


def body_signature_problem(body: Mapping[str, Any]) -> str | None:
    """Why the witness signature a seal or witness record body carries (``signed``,
    ``signature``, ``witness_key``) does not verify; None when it verifies."""
    signed, key = body.get("signed"), body.get("witness_key")
    if not isinstance(signed, Mapping) or not isinstance(key, Mapping):
        return "signed payload or witness key malformed"
    algorithm = key.get("algorithm")
    public_key, sig = b64(key.get("public_key")), b64(body.get("signature"))
    if algorithm not in ALGORITHMS or public_key is None or sig is None:
        return "witness key or signature malformed"
    distid = key.get("distinguishing_id", sm2.DEFAULT_ID.decode())
    if not isinstance(distid, str) or not distid:
        return "witness key's distinguishing_id malformed"
    try:
        message = canonicalize(dict(signed))
    except CanonicalizationError as exc:
        return f"signed payload cannot be canonicalized: {exc}"
    if not verify_witness_signature(
        str(algorithm), public_key, message, sig, distid.encode("utf-8")
    ):
        return "the witness signature does not verify"
    return None


def _check_record(proof: Proof, by_leaf: Mapping[str, Proof]) -> Check:
    body = proof.record.get("body")
    body = body if isinstance(body, Mapping) else {}
    signed, key = body.get("signed"), body.get("witness_key")
    if signed is None and key is None and body.get("signature") is None:
        return _result(proof, True, "carries no witness signature", warning=True)
    problem = body_signature_problem(body)
    if problem is not None:
        return _result(proof, False, problem)
    assert isinstance(signed, Mapping) and isinstance(key, Mapping)
    algorithm = key.get("algorithm")
    if proof.record_type == "seal" and body.get("sample_code") != signed.get("sample_code"):
        return _result(proof, False, "the sealed sample code is not the signed one")
    missing = _images_not_in_parents(proof, signed, by_leaf)
    if missing:
        return _result(
            proof, False, f"signed image(s) not among the record's media: {', '.join(missing)}"
        )
    images = signed.get("images")
    count = len(images) if isinstance(images, list) else 0
    return _result(
        proof, True, f"{algorithm} signature verifies; {count} signed image(s) in the bundle"
    )


def _images_not_in_parents(
    proof: Proof, signed: Mapping[str, Any], by_leaf: Mapping[str, Proof]
) -> list[str]:
    images = signed.get("images")
    if not isinstance(images, list):
        return ["(images is not a list)"]
    held: set[str] = set()
    parents = proof.record.get("parents")
    for leaf in parents if isinstance(parents, list) else []:
        parent = by_leaf.get(str(leaf))
        if parent is None or parent.record_type != "media":
            continue
        files = parent.record.get("files")
        for entry in files if isinstance(files, list) else []:
            if isinstance(entry, Mapping) and isinstance(entry.get("sha256"), str):
                held.add(entry["sha256"])
    return [str(sha)[:16] + "…" for sha in images if sha not in held]


def _result(proof: Proof, ok: bool, detail: str, warning: bool = False) -> Check:
    return Check(
        name="witness_signature",
        ok=ok,
        detail=detail,
        record_id=proof.record_id,
        record_type=proof.record_type,
        warning=warning,
    )
