"""The sealed PDF's signature as the public sees it (step 5 of the package docstring):
checked with verifier.pdf against the platform roots (`SignatureChecker`), and stored bound
to the file's SHA-256 so a cold view need not parse the PDF again (`SignatureVerdicts`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from service.clock import rfc3339
from service.settings import Settings
from service.storage.public_sql import read_signature_check, write_signature_check
from verifier.pdf import PdfVerification, verify_sealed_pdf

log = logging.getLogger(__name__)

#: Seconds a stored signature verdict is used before the PDF is validated again
#: (certificate validity is judged at validation time).
SIGNATURE_VERDICT_MAX_AGE_S = 24 * 3600.0
#: Version of the signature-verdict rule; stored verdicts of another version are ignored.
SIGNATURE_RULE = "verify_sealed_pdf/check_qr=0/v1"


@dataclass
class Signature:
    """The sealed PDF's signature as the public sees it (None fields when not checked)."""

    checked: bool
    ok: bool
    signer: str | None = None
    signed_at: str | None = None
    timestamped: bool | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Checks the sealed copy of a report: (pdf bytes, code, sha256) -> verdict.
SignatureCheck = Callable[[bytes, str, str], Signature]


class SignatureVerdicts:
    """Stored signature verdicts of sealed PDFs, so a cold view need not re-parse the PDF.

    The rule. A view may use a stored verdict for the sealed PDF of report `code` only if
    all of these hold:

    - the verdict is stored under the SHA-256 the report's anchored PDF record names, and
      under the same context: the report code, the pinned trust roots, whether a
      time-stamp is required, and SIGNATURE_RULE (the verifier call it stands for);
    - the blob file on disk was hashed, at its current size/mtime/ctime/inode, to that
      SHA-256 during this view's record checks (`Checker.file_ok`): the bytes are the
      very bytes that were validated, and a verdict is a function of the bytes and the
      context alone;
    - it is younger than SIGNATURE_VERDICT_MAX_AGE_S (certificate validity is judged at
      validation time, so a verdict does not stand forever);
    - its HMAC (a key derived from the service's master key) verifies, so a row written
      into the database by hand is not believed.

    Otherwise the PDF is validated again with verifier.pdf and the new verdict stored.
    The sealing step stores the verdict of the file it has just made (`prime`), so the
    first public view of a report finds it.
    """

    def __init__(self, engine: Engine, key: bytes, context: Callable[[], str]) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._key = hashlib.sha256(b"jianzheng/signature-verdict/v1\0" + key).digest()
        self._context = context

    def context(self, code: str) -> str:
        return hashlib.sha256(f"{SIGNATURE_RULE}|{code}|{self._context()}".encode()).hexdigest()

    def _mac(self, sha256: str, context: str, code: str, checked_at: float, verdict: str) -> str:
        msg = f"{sha256}|{context}|{code}|{checked_at!r}|{verdict}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def load(self, conn: Connection, sha256: str, code: str) -> tuple[Signature, float] | None:
        """The stored verdict and when it was made (time.time()), if the rule allows it.
        Read on the caller's connection (a second one per request could exhaust the pool)."""
        context = self.context(code)
        row = read_signature_check(conn, sha256, context)
        if row is None:
            return None
        stored_code, verdict, checked_at, mac = row
        age = time.time() - checked_at
        if stored_code != code or not -60.0 <= age < SIGNATURE_VERDICT_MAX_AGE_S:
            return None
        if not hmac.compare_digest(mac, self._mac(sha256, context, code, checked_at, verdict)):
            log.warning("stored signature verdict for %s fails its MAC; ignored", code)
            return None
        try:
            fields = orjson.loads(verdict)
            return Signature(**fields), checked_at
        except (orjson.JSONDecodeError, TypeError):
            return None

    def store(self, sha256: str, code: str, signature: Signature) -> float:
        context = self.context(code)
        checked_at = time.time()
        verdict = orjson.dumps(signature.as_json()).decode()
        mac = self._mac(sha256, context, code, checked_at, verdict)
        write_signature_check(self.engine, sha256, context, code, verdict, checked_at, mac)
        return checked_at


class SignatureChecker:
    """Checks sealed PDFs with verifier.pdf against the platform's pinned root."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._roots: list[Any] | None = None
        self._lock = threading.Lock()

    def roots(self) -> list[Any]:
        if self._roots is None:
            with self._lock:
                if self._roots is None:
                    from service.domain.trust import trust_roots_der

                    self._roots = list(trust_roots_der(self.settings))
        return self._roots

    def issued_by_us(self, pdf: bytes) -> bool:
        """Whether the last signature's certificate was issued by our root, even when the
        signature itself no longer verifies (a modified copy rather than a foreign PDF)."""
        return issued_by(pdf, self.roots())

    @property
    def require_timestamp(self) -> bool:
        return self.settings.signing.level != "B-B"

    def verify(self, pdf: bytes, *, check_qr: bool = True) -> PdfVerification:
        """Our signature checks on any PDF (raises PdfUnreadable for a non-PDF)."""
        return verify_sealed_pdf(
            pdf, self.roots(), require_timestamp=self.require_timestamp, check_qr=check_qr
        )

    def context(self) -> str:
        """What a signature verdict depends on besides the file and the code: the pinned
        roots and whether a time-stamp is required (SignatureVerdicts)."""
        roots = hashlib.sha256(b"".join(sorted(self.roots()))).hexdigest()
        return f"roots={roots};timestamp={int(self.require_timestamp)}"

    def __call__(self, pdf: bytes, code: str, sha256: str) -> Signature:
        """The sealed copy of `code`: signature, chain, time-stamp, untouched, SHA-256.

        The QR codes are not re-rendered here: the file's SHA-256 is the anchored one,
        and the QR was checked when the file was made.
        """
        result = verify_sealed_pdf(
            pdf,
            self.roots(),
            expected_code=code,
            expected_sha256=sha256,
            require_timestamp=self.require_timestamp,
            check_qr=False,
        )
        return signature_of(result)


def issued_by(pdf: bytes, roots_der: list[bytes]) -> bool:
    """Whether the last signature's certificate in `pdf` was issued directly by one of
    `roots_der`, whether or not the signature itself still verifies."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        signatures = PdfFileReader(io.BytesIO(pdf), strict=False).embedded_signatures
        cert = signatures[-1].signer_cert if signatures else None
        if cert is None:
            return False
        leaf = x509.load_der_x509_certificate(cert.dump())
        roots = [x509.load_der_x509_certificate(der) for der in roots_der]
    except Exception:  # anything unparseable is simply not ours
        return False
    for root in roots:
        try:
            leaf.verify_directly_issued_by(root)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def signature_of(result: PdfVerification) -> Signature:
    """The public summary of a verifier.pdf result."""
    signed_at = None
    if result.timestamp is not None:
        signed_at = rfc3339(result.timestamp)
    return Signature(
        checked=True,
        ok=result.bottom_line,
        signer=_common_name(result.signer_subject),
        signed_at=signed_at,
        timestamped=bool(result.timestamp_ok),
        detail=None
        if result.bottom_line
        else "; ".join(f"{f.code}: {f.message}" for f in result.findings),
    )


def _common_name(subject: str | None) -> str | None:
    """`Common Name: X, Organization: Y` (asn1crypto's human form) -> X."""
    if not subject:
        return None
    for part in subject.split(", "):
        key, _, value = part.partition(": ")
        if key == "Common Name" and value:
            return value
    return subject
