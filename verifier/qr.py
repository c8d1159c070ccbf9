"""The signed QR payload and the trust list of INTERFACE §7.5, checked offline.

A report sealed under version 1.1 carries a QR code of
``{PUBLIC_BASE_URL}/v/{CODE}/JZ1{BASE32}`` (the URL may be upper case, ``/V/``, so the QR
uses alphanumeric mode). ``BASE32`` is RFC 4648 Base32 without padding of a COSE_Sign1
message (RFC 9052, tag 18):

- protected header ``{1: alg, 4: kid}``: alg -7 (ES256) or -70001 (SM2); kid = the first
  8 bytes of SHA-256 of the signing certificate (DER);
- payload: a CBOR map with integer keys 1 code, 2 report number, 3 institution USCC,
  4 conclusion (0 pass, 1 fail), 5 issued-on date ``YYYY-MM-DD``, 6 SHA-256 of the PDF the
  lab uploaded (32 bytes), 7 sealing time (Unix seconds); keys above 7 are kept as
  ``extra`` (the platform adds none today);
- signature: ``r‖s`` (64 bytes) over the ``Signature1`` structure of RFC 9052 §4.4 with
  an empty external AAD: ES256, or for alg -70001 SM2 with SM3 under the default
  distinguishing ID ``1234567812345678`` (§7.7, verifier/sm2.py); the trust list names
  each key's ``alg``, and a key's certificate is read with asn1crypto (an SM2 key's too).

The trust list (``jianzheng-trust/1``) names the QR-signing keys with their validity
windows. The platform's root signs it like a CRL: ``signature.value`` is the ES256
signature (``r‖s``, base64) over the RFC 8785 canonical JSON of the whole document without
its ``signature`` member, and ``signature.root_id`` the first 8 bytes (16 hex) of SHA-256 of
that root's certificate (DER). A payload is valid when its kid names a key of the list,
the signature verifies with that key's certificate, and its sealing time lies within the
key's window.

Everything here is pure: no network, no clock (the caller says what "now" is, if at all).
Malformed input raises :class:`~verifier.errors.InvalidQr` /
:class:`~verifier.errors.InvalidTrustList`; a check that fails is a ``Check`` with
``ok=False`` in :class:`QrVerification`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import cbor2
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from verifier import sm2
from verifier.canonical import canonicalize, loads_strict
from verifier.errors import CanonicalizationError, InvalidQr, InvalidTrustList
from verifier.models import Check

PAYLOAD_PREFIX = "JZ1"
COSE_SIGN1_TAG = 18
ALG_ES256 = -7
ALG_SM2 = -70001
ALG_NAMES = {ALG_ES256: "ES256", ALG_SM2: "SM2"}
HEADER_ALG = 1
HEADER_KID = 4
KID_BYTES = 8
SIGNATURE_BYTES = 64
TRUST_LIST_FORMAT = "jianzheng-trust/1"

#: Longest QR text looked at (a version-40 QR holds at most 4,296 alphanumeric characters).
MAX_QR_TEXT = 4296
#: Longest COSE message accepted (ours are ~200 bytes).
MAX_COSE_BYTES = 2048
MAX_TRUST_LIST_BYTES = 1024 * 1024
MAX_TRUST_KEYS = 1000

KEY_CODE, KEY_REPORT_NO, KEY_INSTITUTION, KEY_CONCLUSION = 1, 2, 3, 4
KEY_ISSUED_ON, KEY_ORIGINAL_SHA256, KEY_SEALED_AT = 5, 6, 7
CONCLUSIONS: dict[int, Literal["pass", "fail"]] = {0: "pass", 1: "fail"}

_CODE_RE = re.compile(r"^[0-9A-Z]{4,64}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KID_HEX_RE = re.compile(r"^[0-9a-f]{16}$")
_B32_RE = re.compile(r"^[A-Z2-7]+$")


@dataclass(frozen=True)
class QrFacts:
    """The facts a report's QR payload signs (INTERFACE §7.5 keys 1-7)."""

    code: str
    report_no: str
    institution: str
    conclusion: Literal["pass", "fail"]
    issued_on: str
    original_sha256: str
    sealed_at: int
    extra: Mapping[int, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "report_no": self.report_no,
            "institution": self.institution,
            "conclusion": self.conclusion,
            "issued_on": self.issued_on,
            "original_sha256": self.original_sha256,
            "sealed_at": self.sealed_at,
        }

    def to_cbor_map(self) -> dict[int, Any]:
        out: dict[int, Any] = {
            KEY_CODE: self.code,
            KEY_REPORT_NO: self.report_no,
            KEY_INSTITUTION: self.institution,
            KEY_CONCLUSION: 0 if self.conclusion == "pass" else 1,
            KEY_ISSUED_ON: self.issued_on,
            KEY_ORIGINAL_SHA256: bytes.fromhex(self.original_sha256),
            KEY_SEALED_AT: self.sealed_at,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class SignedQr:
    """A parsed (not yet verified) COSE_Sign1 QR payload."""

    alg: int
    kid: bytes
    protected: bytes
    payload: bytes
    signature: bytes
    facts: QrFacts
    #: The code in the URL path, when the text was a URL (None for a bare ``JZ1…``).
    url_code: str | None = None

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected, self.payload)


@dataclass(frozen=True)
class TrustKey:
    kid: str
    alg: Literal["ES256", "SM2"]
    certificate: bytes
    not_before: int
    not_after: int

    def covers(self, when: int) -> bool:
        return self.not_before <= when <= self.not_after


@dataclass(frozen=True)
class TrustList:
    issued_at: int
    keys: tuple[TrustKey, ...]
    document: Mapping[str, Any]
    #: `signature.root_id` (16 hex) and `signature.value` (r‖s), or None when unsigned.
    signature_root: str | None
    signature_value: bytes | None

    def key(self, kid: str) -> TrustKey | None:
        return next((k for k in self.keys if k.kid == kid), None)


@dataclass(frozen=True)
class QrVerification:
    """The checks of one payload against a trust list; ``bottom_line`` when all passed."""

    signed: SignedQr
    checks: tuple[Check, ...]
    key: TrustKey | None

    @property
    def bottom_line(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def facts(self) -> QrFacts:
        return self.signed.facts


# --- COSE_Sign1 --------------------------------------------------------------------------


def kid_of_certificate(der: bytes) -> bytes:
    """§7.5 key id: the first 8 bytes of SHA-256 of the certificate (DER)."""
    return hashlib.sha256(der).digest()[:KID_BYTES]


def protected_header(alg: int, kid: bytes) -> bytes:
    return cbor2.dumps({HEADER_ALG: alg, HEADER_KID: kid}, canonical=True)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4 Sig_structure for COSE_Sign1, external AAD empty."""
    return cbor2.dumps(["Signature1", protected, b"", payload], canonical=True)


def encode_sign1(protected: bytes, payload: bytes, signature: bytes) -> bytes:
    return cbor2.dumps(
        cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]), canonical=True
    )


def payload_text(cose: bytes) -> str:
    """``JZ1`` + upper-case Base32 without padding: what follows ``/v/{CODE}/``."""
    return PAYLOAD_PREFIX + base64.b32encode(cose).decode("ascii").rstrip("=")


def split_qr_text(text: str) -> tuple[str | None, str]:
    """(code in the URL or None, the ``JZ1…`` part) of a QR text: a URL
    ``…/v/{CODE}/JZ1…`` (any case of ``/v/``) or a bare ``JZ1…``; InvalidQr otherwise."""
    if not isinstance(text, str) or len(text) > MAX_QR_TEXT:
        raise InvalidQr("the QR text is too long to be a Jianzheng payload", code="qr_too_long")
    text = text.strip()
    if text.upper().startswith(PAYLOAD_PREFIX) and "/" not in text:
        return None, text.upper()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidQr("the QR text is not a URL", code="qr_not_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InvalidQr("the QR text is neither a URL nor a JZ1 payload", code="qr_not_url")
    m = re.fullmatch(r"(?:/.*)?/[vV]/([^/]+)(?:/([^/]*))?/?", unquote(parts.path))
    if m is None:
        raise InvalidQr("the URL is not a Jianzheng verification URL", code="qr_not_ours")
    code = m.group(1).upper()
    if not _CODE_RE.fullmatch(code):
        raise InvalidQr("the URL names no report code", code="qr_not_ours")
    if not m.group(2):
        raise InvalidQr(
            "this QR code carries no signed payload (a report sealed before version 1.1: "
            "check it online at /v/{code})",
            code="qr_unsigned",
        )
    return code, m.group(2).upper()


def _decode_cbor(data: bytes, what: str) -> Any:
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
            EOFError, IndexError, KeyError):
        raise InvalidQr(f"the {what} is not valid CBOR", code="qr_not_cbor") from None
    if fp.read(1):
        raise InvalidQr(f"the {what} has trailing bytes", code="qr_not_cbor")
    return value


def _canonical(value: Any, data: bytes, what: str) -> None:
    try:
        again = cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError):
        again = b""
    if again != data:
        raise InvalidQr(f"the {what} is not in canonical CBOR", code="qr_not_canonical")


def decode_payload(text: str) -> SignedQr:
    """Parse a QR text (URL or bare ``JZ1…``) into a :class:`SignedQr`; InvalidQr if it is
    not a well-formed §7.5 payload. Nothing is verified yet."""
    url_code, p = split_qr_text(text)
    if not p.startswith(PAYLOAD_PREFIX):
        raise InvalidQr("the payload does not start with JZ1", code="qr_not_jz1")
    b32 = p[len(PAYLOAD_PREFIX):]
    if not b32 or not _B32_RE.fullmatch(b32) or len(b32) % 8 in (1, 3, 6):
        raise InvalidQr("the payload is not Base32", code="qr_not_base32")
    try:
        cose = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    except (binascii.Error, ValueError):
        raise InvalidQr("the payload is not Base32", code="qr_not_base32") from None
    if len(cose) > MAX_COSE_BYTES:
        raise InvalidQr("the COSE message is too large", code="qr_too_long")
    outer = _decode_cbor(cose, "COSE message")
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != COSE_SIGN1_TAG:
        raise InvalidQr("not a tagged COSE_Sign1 message (tag 18)", code="qr_not_cose")
    body = outer.value
    if (
        not isinstance(body, list)
        or len(body) != 4
        or not isinstance(body[0], bytes)
        or not isinstance(body[1], dict)
        or not isinstance(body[2], bytes)
        or not isinstance(body[3], bytes)
    ):
        raise InvalidQr("COSE_Sign1 must be [protected, unprotected, payload, signature]",
                        code="qr_not_cose")
    protected, unprotected, payload, signature = body
    _canonical(outer, cose, "COSE message")
    header = _decode_cbor(protected, "protected header")
    if not isinstance(header, dict) or set(header) != {HEADER_ALG, HEADER_KID}:
        raise InvalidQr("the protected header must be {1: alg, 4: kid}", code="qr_bad_header")
    alg, kid = header[HEADER_ALG], header[HEADER_KID]
    if alg not in ALG_NAMES or not isinstance(kid, bytes) or len(kid) != KID_BYTES:
        raise InvalidQr("unknown alg or a kid that is not 8 bytes", code="qr_bad_header")
    if unprotected:
        raise InvalidQr("the unprotected header must be empty", code="qr_bad_header")
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidQr("the signature is not 64 bytes (r‖s)", code="qr_bad_signature_size")
    facts = _facts(_decode_cbor(payload, "payload"), payload)
    return SignedQr(alg, kid, protected, payload, signature, facts, url_code)


def _facts(value: Any, data: bytes) -> QrFacts:
    if not isinstance(value, dict) or not all(isinstance(k, int) for k in value):
        raise InvalidQr("the payload must be a CBOR map with integer keys", code="qr_bad_payload")
    _canonical(value, data, "payload")
    missing = [k for k in range(1, 8) if k not in value]
    if missing:
        raise InvalidQr(f"the payload lacks keys {missing}", code="qr_bad_payload")
    code, report_no, uscc = value[KEY_CODE], value[KEY_REPORT_NO], value[KEY_INSTITUTION]
    conclusion, issued_on = value[KEY_CONCLUSION], value[KEY_ISSUED_ON]
    sha, sealed_at = value[KEY_ORIGINAL_SHA256], value[KEY_SEALED_AT]
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise InvalidQr("key 1 is not a canonical report code", code="qr_bad_payload")
    if not isinstance(report_no, str) or not report_no or not isinstance(uscc, str) or not uscc:
        raise InvalidQr("keys 2 and 3 must be non-empty text", code="qr_bad_payload")
    if type(conclusion) is not int or conclusion not in CONCLUSIONS:
        raise InvalidQr("key 4 must be 0 (pass) or 1 (fail)", code="qr_bad_payload")
    if not isinstance(issued_on, str) or not _DATE_RE.fullmatch(issued_on):
        raise InvalidQr("key 5 must be a YYYY-MM-DD date", code="qr_bad_payload")
    if not isinstance(sha, bytes) or len(sha) != 32:
        raise InvalidQr("key 6 must be 32 bytes", code="qr_bad_payload")
    if type(sealed_at) is not int or not 0 <= sealed_at < 2**40:
        raise InvalidQr("key 7 must be Unix seconds", code="qr_bad_payload")
    extra = {k: v for k, v in value.items() if k > KEY_SEALED_AT}
    if any(k < 1 for k in value):
        raise InvalidQr("payload keys start at 1", code="qr_bad_payload")
    return QrFacts(code, report_no, uscc, CONCLUSIONS[conclusion], issued_on, sha.hex(),
                   sealed_at, extra)


def raw_to_der(signature: bytes) -> bytes:
    """``r‖s`` (64 bytes) -> the DER ECDSA-Sig-Value cryptography verifies."""
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    return encode_dss_signature(r, s)


def certificate_spki(der: bytes) -> bytes | None:
    """The SubjectPublicKeyInfo DER of a certificate, read with asn1crypto (which, unlike
    the `cryptography` package, reads a certificate of an SM2 key); None if unreadable."""
    try:
        cert = asn1_x509.Certificate.load(der, strict=True)
        spki: bytes = cert["tbs_certificate"]["subject_public_key_info"].dump()
    except (ValueError, TypeError, KeyError):
        return None
    return spki


def es256_verify(public_key: Any, signature: bytes, data: bytes) -> bool:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ) or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        public_key.verify(raw_to_der(signature), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --- trust list --------------------------------------------------------------------------


def parse_trust_list(data: bytes) -> TrustList:
    """Parse a ``jianzheng-trust/1`` document (strict JSON); InvalidTrustList if unusable."""
    if len(data) > MAX_TRUST_LIST_BYTES:
        raise InvalidTrustList("the trust list is too large", code="trust_list_too_large")
    try:
        doc = loads_strict(data, max_bytes=MAX_TRUST_LIST_BYTES)
    except (ValueError, UnicodeDecodeError, CanonicalizationError) as exc:
        raise InvalidTrustList(f"the trust list is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != TRUST_LIST_FORMAT:
        raise InvalidTrustList(f"not a {TRUST_LIST_FORMAT} document", code="trust_list_format")
    issued_at, raw_keys = doc.get("issued_at"), doc.get("keys")
    if type(issued_at) is not int or not isinstance(raw_keys, list):
        raise InvalidTrustList("issued_at (Unix s) and keys (list) are required")
    if len(raw_keys) > MAX_TRUST_KEYS:
        raise InvalidTrustList("too many keys", code="trust_list_too_large")
    keys: list[TrustKey] = []
    for entry in raw_keys:
        if not isinstance(entry, dict):
            raise InvalidTrustList("every key is an object")
        kid, alg, cert_b64 = entry.get("kid"), entry.get("alg"), entry.get("certificate")
        nb, na = entry.get("not_before"), entry.get("not_after")
        if not isinstance(kid, str) or not _KID_HEX_RE.fullmatch(kid):
            raise InvalidTrustList("a key's kid is not 16 lowercase hex")
        if alg not in ("ES256", "SM2") or type(nb) is not int or type(na) is not int:
            raise InvalidTrustList(f"key {kid}: alg, not_before and not_after are required")
        try:
            der = base64.b64decode(str(cert_b64), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidTrustList(f"key {kid}: certificate is not base64") from None
        keys.append(TrustKey(kid, alg, der, nb, na))
    sig = doc.get("signature")
    root: str | None = None
    value: bytes | None = None
    if sig is not None:
        if not isinstance(sig, dict) or sig.get("alg") != "ES256":
            raise InvalidTrustList("signature must be {alg: ES256, root_id, value}")
        root = sig.get("root_id")
        if not isinstance(root, str) or not _KID_HEX_RE.fullmatch(root):
            raise InvalidTrustList("signature.root_id is not 16 lowercase hex")
        try:
            value = base64.b64decode(str(sig.get("value")), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidTrustList("signature.value is not base64") from None
    return TrustList(issued_at, tuple(keys), doc, root, value)


#: The members a trust list's signatures do not cover (themselves).
SIGNATURE_MEMBERS = ("signature", "signature_sm2")


def trust_list_signed_bytes(document: Mapping[str, Any]) -> bytes:
    """What the list's signatures cover: RFC 8785 JSON of the document minus `signature`
    and `signature_sm2` (a list without the SM2 one is signed exactly as before)."""
    return canonicalize({k: v for k, v in document.items() if k not in SIGNATURE_MEMBERS})


def check_trust_list_sm2(document: Mapping[str, Any], roots_der: Sequence[bytes]) -> Check | None:
    """The list's SM2 co-signature (§7.7), when it has one: ``signature_sm2`` = ``{"alg":
    "SM2", "certificate": base64 DER of the SM2 key's certificate, issued by a platform root
    (ES256), "value": base64 r‖s}`` over the same bytes as ``signature``. None when absent."""
    sig = document.get("signature_sm2")
    if sig is None:
        return None
    if not isinstance(sig, Mapping) or sig.get("alg") != "SM2":
        return Check("trust_list_sm2", False, "signature_sm2 must be {alg: SM2, certificate, "
                     "value}")
    try:
        cert = base64.b64decode(str(sig.get("certificate")), validate=True)
        value = base64.b64decode(str(sig.get("value")), validate=True)
    except (binascii.Error, ValueError):
        return Check("trust_list_sm2", False, "signature_sm2 is not base64")
    issuer = issuing_root(cert, roots_der)
    if issuer is None:
        return Check("trust_list_sm2", False,
                     "the SM2 signing certificate is not issued by a trusted root")
    spki = certificate_spki(cert)
    if spki is None or not sm2.verify(spki, trust_list_signed_bytes(document), value):
        return Check("trust_list_sm2", False, "the trust list's SM2 signature does not verify")
    return Check("trust_list_sm2", True, f"SM2 co-signature verifies (certificate issued by "
                 f"the platform root {issuer})")


def issuing_root(cert_der: bytes, roots_der: Sequence[bytes]) -> str | None:
    """The fingerprint of the root (ES256) whose signature the certificate carries, or None.
    Read with asn1crypto: `cryptography` cannot load a certificate of an SM2 key."""
    try:
        cert = asn1_x509.Certificate.load(cert_der, strict=True)
        tbs = cert["tbs_certificate"].dump()
        signature = cert["signature_value"].native
        if cert["signature_algorithm"]["algorithm"].native != "sha256_ecdsa":
            return None
    except (ValueError, TypeError, KeyError):
        return None
    for der in roots_der:
        try:
            root = x509.load_der_x509_certificate(der)
            public_key = root.public_key()
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                continue
            if root.subject.public_bytes() != cert["tbs_certificate"]["issuer"].dump():
                continue
            public_key.verify(signature, tbs, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, TypeError):
            continue
        return root_fingerprint(der)
    return None


def root_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).digest()[:8].hex()


def check_trust_list(trust: TrustList, roots_der: Sequence[bytes]) -> Check:
    """The list's signature against the platform roots (`jianzheng ca roots`)."""
    if trust.signature_value is None or trust.signature_root is None:
        return Check("trust_list", False, "the trust list is not signed")
    for der in roots_der:
        if root_fingerprint(der) != trust.signature_root:
            continue
        try:
            root = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        if es256_verify(root.public_key(), trust.signature_value,
                        trust_list_signed_bytes(trust.document)):
            co = check_trust_list_sm2(trust.document, roots_der)
            if co is not None and not co.ok:
                return Check("trust_list", False, co.detail)
            return Check("trust_list", True,
                         f"signed by the platform root {trust.signature_root}"
                         f"{', co-signed with SM2' if co is not None else ''}, "
                         f"issued at {trust.issued_at}")
        return Check("trust_list", False, "the trust list's signature does not verify")
    return Check("trust_list", False,
                 f"the trust list is signed by {trust.signature_root}, not a trusted root")


def load_pem_roots(pem: bytes) -> list[bytes]:
    """DER of every certificate in a PEM file (ValueError when there is none)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = x509.load_pem_x509_certificates(pem)
    return [c.public_bytes(Encoding.DER) for c in certs]


# --- verification ------------------------------------------------------------------------


def verify_signed_qr(signed: SignedQr, trust: TrustList) -> QrVerification:
    """§7.5: (1) the URL's code is the payload's, (2) the kid names a key of the list whose
    certificate it is, (3) the signature verifies with that certificate, (4) the sealing
    time lies within the key's window."""
    checks: list[Check] = []
    facts = signed.facts
    # 1. the code the URL opens is the code the payload signs
    if signed.url_code is not None:
        same = signed.url_code == facts.code
        checks.append(Check("qr_url", same, "the URL names the signed code" if same else
                            f"the URL names {signed.url_code}, the payload {facts.code}"))
    # 2. a key of the list
    key = trust.key(signed.kid_hex)
    if key is None:
        checks.append(Check("qr_key", False,
                            f"key {signed.kid_hex} is not in the trust list (unknown or "
                            "removed)"))
        return QrVerification(signed, tuple(checks), None)
    alg = ALG_NAMES[signed.alg]
    if kid_of_certificate(key.certificate) != signed.kid or key.alg != alg:
        checks.append(Check("qr_key", False,
                            f"the list's key {key.kid} does not match its certificate or alg"))
        return QrVerification(signed, tuple(checks), key)
    checks.append(Check("qr_key", True, f"key {key.kid} ({alg}) is in the trust list"))
    # 3. the signature
    if alg == "SM2":
        spki = certificate_spki(key.certificate)
        good = spki is not None and sm2.verify(spki, signed.to_be_signed(), signed.signature)
        checks.append(Check("qr_signature", good, "SM2 signature verifies" if good else
                            "the signature does not verify: the payload was changed or not "
                            "signed by this key"))
    else:
        try:
            public_key = x509.load_der_x509_certificate(key.certificate).public_key()
        except ValueError:
            public_key = None
        good = public_key is not None and es256_verify(
            public_key, signed.signature, signed.to_be_signed()
        )
        checks.append(Check("qr_signature", good, "ES256 signature verifies" if good else
                            "the signature does not verify: the payload was changed or not "
                            "signed by this key"))
    # 4. the sealing time within the key's window
    inside = key.covers(facts.sealed_at)
    checks.append(Check("qr_window", inside,
                        f"sealed at {facts.sealed_at}, within the key's window "
                        f"[{key.not_before}, {key.not_after}]" if inside else
                        f"sealed at {facts.sealed_at}, outside the key's window "
                        f"[{key.not_before}, {key.not_after}]"))
    return QrVerification(signed, tuple(checks), key)


def verify_qr_text(text: str, trust: TrustList) -> QrVerification:
    """Parse and verify a QR text; InvalidQr when it is not a payload at all."""
    return verify_signed_qr(decode_payload(text), trust)


def trust_list_json(document: Mapping[str, Any]) -> bytes:
    """The served form of a trust list document (UTF-8 JSON, keys sorted)."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
