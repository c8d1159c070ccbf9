"""Witness keys and the signatures of electronic seals (电子封志) and witness records.

A witness signs the RFC 8785 canonical bytes of a small JSON payload with an Ed25519,
ECDSA P-256 (SHA-256) or SM2 (with SM3 and the default distinguishing ID
`1234567812345678`, INTERFACE §7.7) key that a lab registered for that witness beforehand:

    seal:    {"format": "jianzheng-seal/1", "sample_code", "sealed_at", "place", "images"}
    witness: {"format": "jianzheng-witness/1", "sample_codes", "witnessed_at", "location",
              "activities", "images"}

`images` are the lowercase-hex SHA-256 of the key images, in the order the witness
listed them. ECDSA signatures may be DER or raw r||s (64 bytes); all signatures travel
as standard base64. The record stores the payload, the signature and the public key
(SubjectPublicKeyInfo, base64 DER), so anyone can re-verify it from the record alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from service.errors import Invalid
from verifier import sm2
from verifier.canonical import canonicalize
from verifier.witness import b64, body_signature_problem, verify_witness_signature

Algorithm = Literal["ed25519", "ecdsa-p256", "sm2"]
ALGORITHMS: tuple[str, ...] = ("ed25519", "ecdsa-p256", "sm2")
SEAL_FORMAT = "jianzheng-seal/1"
WITNESS_FORMAT = "jianzheng-witness/1"
#: Longest accepted public key (PEM text or base64 DER) and signature (base64).
MAX_PUBLIC_KEY_CHARS = 4096
MAX_SIGNATURE_CHARS = 512


@dataclass(frozen=True)
class ParsedKey:
    algorithm: str
    der: bytes  # SubjectPublicKeyInfo

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode("ascii")


def parse_public_key(text: str, algorithm: str) -> ParsedKey:
    """A PEM or base64-DER SubjectPublicKeyInfo of the named algorithm; 422 otherwise."""
    if algorithm not in ALGORITHMS:
        raise Invalid("witness_key_invalid", f"unsupported algorithm {algorithm!r}")
    if len(text) > MAX_PUBLIC_KEY_CHARS:
        raise Invalid("witness_key_invalid", "public key too long")
    if algorithm == "sm2":
        return _parse_sm2(text)
    try:
        stripped = text.strip()
        if stripped.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(stripped.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(stripped, validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise Invalid(
            "witness_key_invalid", "public_key is not a PEM or base64 DER public key"
        ) from exc
    if algorithm == "ed25519" and not isinstance(key, ed25519.Ed25519PublicKey):
        raise Invalid("witness_key_invalid", "public_key is not an Ed25519 key")
    if algorithm == "ecdsa-p256" and not (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        raise Invalid("witness_key_invalid", "public_key is not an ECDSA P-256 key")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ParsedKey(algorithm=algorithm, der=der)


def _parse_sm2(text: str) -> ParsedKey:
    """An SM2 key (the `cryptography` package has no SM2): PEM or base64 DER SPKI, or the
    base64 65-byte point; stored as the SPKI OpenSSL writes."""
    try:
        stripped = text.strip()
        if stripped.startswith("-----BEGIN PUBLIC KEY-----"):
            stripped = "".join(
                line for line in stripped.splitlines() if not line.startswith("-----")
            )
        point = sm2.public_point(base64.b64decode(stripped, validate=True))
    except (sm2.SM2KeyError, binascii.Error, ValueError) as exc:
        raise Invalid("witness_key_invalid", "public_key is not an SM2 public key") from exc
    return ParsedKey(algorithm="sm2", der=sm2.spki_der(point))


def decode_signature(text: str) -> bytes | None:
    """Standard base64 to bytes; None when it is not base64."""
    return b64(text, MAX_SIGNATURE_CHARS)


def verify_signature(
    algorithm: str,
    public_key_der: bytes,
    message: bytes,
    sig: bytes,
    distid: bytes = sm2.DEFAULT_ID,
) -> bool:
    """True when `sig` is a valid signature of `message` by the key (an SM2 key under
    `distid`); never raises. The verifier's implementation, so intake and an auditor's
    re-check cannot disagree."""
    return verify_witness_signature(algorithm, public_key_der, message, sig, distid)


def seal_payload(
    sample_code: str, sealed_at: str, place: str, images: list[str]
) -> dict[str, Any]:
    return {
        "format": SEAL_FORMAT,
        "sample_code": sample_code,
        "sealed_at": sealed_at,
        "place": place,
        "images": list(images),
    }


def witness_payload(
    sample_codes: list[str],
    witnessed_at: str,
    location: str,
    activities: list[str],
    images: list[str],
) -> dict[str, Any]:
    return {
        "format": WITNESS_FORMAT,
        "sample_codes": list(sample_codes),
        "witnessed_at": witnessed_at,
        "location": location,
        "activities": list(activities),
        "images": list(images),
    }


def signed_bytes(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes a witness signs: RFC 8785 canonical JSON of the payload."""
    return canonicalize(dict(payload))


@dataclass(frozen=True)
class SealCheck:
    """The result of re-verifying a stored seal at receipt (验封). One field per check."""

    record_intact: bool
    signature_valid: bool
    sample_code_matches: bool
    seal_intact: bool

    @property
    def passed(self) -> bool:
        return (
            self.record_intact
            and self.signature_valid
            and self.sample_code_matches
            and self.seal_intact
        )

    def as_json(self) -> dict[str, Any]:
        checks = {
            "record_intact": self.record_intact,
            "signature_valid": self.signature_valid,
            "sample_code_matches": self.sample_code_matches,
            "seal_intact": self.seal_intact,
        }
        return {
            "result": "pass" if self.passed else "fail",
            "checks": checks,
            "failed": [name for name, ok in checks.items() if not ok],
        }


def check_stored_seal(
    seal_record: Mapping[str, Any],
    *,
    canonical_matches_leaf: bool,
    observed_sample_code: str,
    seal_intact: bool,
) -> SealCheck:
    """Re-verify a seal record's signature from its own body; never raises."""
    body = seal_record.get("body")
    signature_ok = False
    sealed_code = None
    if isinstance(body, Mapping):
        payload = body.get("signed")
        sig_text = body.get("signature")
        if isinstance(payload, Mapping):
            sealed_code = payload.get("sample_code")
        # the verifier's own check, so intake and an auditor's re-check cannot disagree
        signature_ok = (
            isinstance(payload, Mapping)
            and payload.get("format") == SEAL_FORMAT
            and isinstance(sig_text, str)
            and len(sig_text) <= MAX_SIGNATURE_CHARS
            and body_signature_problem(body) is None
        )
    return SealCheck(
        record_intact=canonical_matches_leaf,
        signature_valid=signature_ok,
        sample_code_matches=sealed_code == observed_sample_code,
        seal_intact=seal_intact,
    )
