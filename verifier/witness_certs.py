"""§7.2 `witness_unverified` from a bundle alone: is a seal's or witness record's key
certified by the platform?

A supervision agency's verification of a witness key is a `registry` record
(`body.kind` = `witness`) naming the X.509 certificate the platform CA issued for the key
(file role `witness_certificate`); seals and witness records signed with a verified key list
that record among their parents, so the bundle carries the certificate. A seal or witness
record is verified when some certificate in the bundle:

1. is a certificate of a `registry` record of kind `witness` in the bundle;
2. is issued directly by one of the trusted roots (its signature verifies with the root's key);
3. carries the extended key usage ``WITNESS_SIGNING_EKU``;
4. certifies exactly the record's key (SHA-256 of the SubjectPublicKeyInfo equals the
   record's ``witness_key.fingerprint``, and the record's ``public_key`` is that key);
5. was valid when the platform received the record (``created_at``).

Otherwise the record gets the warning `witness_unverified`. Without trusted roots nothing
can chain to them, so the check is not made (the caller says so).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from verifier.custody import EvidenceWarning

WITNESS_UNVERIFIED = "witness_unverified"
#: The extended key usage of a witness certificate (signer/ca.py issues it; UUID OID, X.667).
WITNESS_SIGNING_EKU = x509.ObjectIdentifier("2.25.302178445291734553720409183468961243119")
CERTIFICATE_ROLE = "witness_certificate"
#: At most this many witness certificates are examined per bundle.
MAX_CERTIFICATES = 1000

_LABEL = {"seal": "电子封志", "witness": "见证记录"}


@dataclass(frozen=True)
class CertifiedKey:
    fingerprint: str
    not_before: datetime
    not_after: datetime


def parse_roots(trust_roots: Sequence[bytes]) -> list[x509.Certificate]:
    """The trusted roots (PEM, possibly several per item, or DER) as certificates."""
    out: list[x509.Certificate] = []
    for item in trust_roots:
        data = bytes(item)
        if b"-----BEGIN" in data:
            out += x509.load_pem_x509_certificates(data)
        else:
            out.append(x509.load_der_x509_certificate(data))
    return out


def _body(record: Mapping[str, Any]) -> Mapping[str, Any]:
    body = record.get("body")
    return body if isinstance(body, Mapping) else {}


def certificate_files(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Step 1: the SHA-256 of every witness certificate the bundle's registry records name."""
    out: list[str] = []
    for record in records:
        if record.get("type") != "registry" or _body(record).get("kind") != "witness":
            continue
        files = record.get("files")
        for f in files if isinstance(files, list) else []:
            if isinstance(f, Mapping) and f.get("role") == CERTIFICATE_ROLE:
                sha = f.get("sha256")
                if isinstance(sha, str) and sha not in out:
                    out.append(sha)
    return out[:MAX_CERTIFICATES]


def certified_key(der: bytes, roots: Sequence[x509.Certificate]) -> CertifiedKey | None:
    """Steps 2-3: the key a certificate certifies, if it chains to a root; else None."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    if not any(_issued_by(cert, root) for root in roots):
        return None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if WITNESS_SIGNING_EKU not in eku:
        return None
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CertifiedKey(
        hashlib.sha256(spki).hexdigest(), cert.not_valid_before_utc, cert.not_valid_after_utc
    )


def _issued_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _record_key(record: Mapping[str, Any]) -> str | None:
    """Step 4: the fingerprint of the record's key, when its public key matches it."""
    key = _body(record).get("witness_key")
    if not isinstance(key, Mapping):
        return None
    fingerprint, public = key.get("fingerprint"), key.get("public_key")
    if not isinstance(fingerprint, str) or not isinstance(public, str):
        return None
    try:
        der = base64.b64decode(public, validate=True)
    except (binascii.Error, ValueError):
        return None
    return fingerprint if hashlib.sha256(der).hexdigest() == fingerprint else None


def _received(record: Mapping[str, Any]) -> datetime | None:
    value = record.get("created_at")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def witness_warnings(
    records: Sequence[Mapping[str, Any]],
    certificates: Mapping[str, bytes],
    roots: Sequence[x509.Certificate],
) -> list[EvidenceWarning]:
    """`witness_unverified` for each seal and witness record no certificate covers.

    `records`: the bundle's records; `certificates`: the certificate files by SHA-256 (those
    of ``certificate_files``); `roots`: the trusted roots."""
    certified: dict[str, list[CertifiedKey]] = {}
    for sha in certificate_files(records):
        der = certificates.get(sha)
        found = certified_key(der, roots) if der is not None else None
        if found is not None:
            certified.setdefault(found.fingerprint, []).append(found)
    out: list[EvidenceWarning] = []
    signed = [r for r in records if r.get("type") in _LABEL]
    for record in sorted(signed, key=lambda r: (str(r.get("created_at")), str(r.get("id")))):
        fingerprint, at = _record_key(record), _received(record)
        ok = (
            fingerprint is not None
            and at is not None
            and any(c.not_before <= at <= c.not_after for c in certified.get(fingerprint, []))
        )
        if not ok:
            what = _LABEL[str(record.get("type"))]
            out.append(
                EvidenceWarning(
                    WITNESS_UNVERIFIED,
                    str(record.get("id")),
                    f"{what}：见证人员的密钥未经监督机构核验",
                )
            )
    return out
