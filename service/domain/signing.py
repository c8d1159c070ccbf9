"""Signing a report PDF (INTERFACE §5.3 `PUT /api/v1/reports/{code}/pdf`) and its record.

The platform stamps the QR code and the institution's seal image (印章) on every page
and PAdES-signs the PDF with the institution's key
(development CA under `var/ca`, or a PKCS#11 token when `JZ_SIGNING__PKCS11_MODULE` is
set), time-stamped per `JZ_SIGNING__LEVEL`. Both files are stored content-addressed; one
`report` evidence record (stage `sealed`) names them by SHA-256 (roles `original_pdf`,
`signed_pdf`) with the report's latest record as parent, and the code is marked finished
(`pdf_record_id`, `sealed_at`).

The QR code carries the signed payload of INTERFACE §7.5 (`{BASE}/V/{CODE}/JZ1…`, a
COSE_Sign1 over code, report number, institution, conclusion, issued-on date, the original's
SHA-256 and the sealing time, made here at signing time with the QR key of
`service.domain.qrsign`); the record body's `qr` names its key id and sealing time. When
the payload would not fit a version-15 QR (a very long base URL or report number), the
report gets the plain `{BASE}/v/{CODE}` QR of version 1 and `qr` is null.

A code is signed once. Sending the same PDF again answers the first result; a different
PDF is 409 `already_sealed` (a correction is a new code plus a revocation of this one).

Names: "seal" alone means a sample's electronic seal (电子封志, service/domain/seals.py);
here the verbs are "sign" and "signed".
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.clock import utc_now
from service.domain import warnings as report_warnings
from service.domain.evidence import FileRef, append_record, file_ref
from service.domain.history import cited_records, report_history
from service.domain.reports import load_own_code
from service.domain.trust import platform_ca, trust_roots_der
from service.errors import Conflict, IntegrityFault, Invalid, NotFound, TooLarge, Unavailable
from service.settings import Settings
from service.storage import loghash
from service.storage.blobs import BlobStore
from service.storage.models import Institution, Record, RecordFile, ReportCode
from signer.ca import DevCA
from signer.errors import PdfRejected, SignerError
from signer.keys import KeySource, PKCS11KeySource
from signer.qrkeys import QrKeyStore, signed_qr_url
from signer.seal import SealedPdf, seal_pdf
from signer.stamp import SIGNED_QR_LAYOUT, SealAppearance, make_dev_seal_image, prepare_seal
from signer.tsa import TimeStampAuthority, http_timestamper
from verifier.bundle_checks import SIGNED_PDF_ROLE
from verifier.errors import InvalidQr
from verifier.qr import QrFacts, decode_payload

log = logging.getLogger(__name__)

PDF_MEDIA_TYPE = "application/pdf"
ROLE_ORIGINAL = "original_pdf"
#: The file role of the sealed PDF, the one the verifier's sealed-PDF check looks for.
ROLE_SIGNED = SIGNED_PDF_ROLE
#: Statuses of a code that can no longer take a PDF.
CLOSED_STATUSES = frozenset({"revoked", "voided", "superseded"})


@dataclass
class ReportSigner:
    """Keys, TSA and stamp material of this process, prepared once (ServiceState owns it)."""

    settings: Settings
    ca: DevCA
    timestamper: Any
    #: The platform's own RFC 3161 TSA (dev CA key), also served at `POST /tsa`.
    authority: TimeStampAuthority
    #: The QR-payload signing keys (INTERFACE §7.5); None signs plain QR codes only.
    qr_keys: QrKeyStore | None = None
    _keys: dict[str, KeySource] = field(default_factory=dict)
    _platform_key: KeySource | None = None
    _appearances: dict[str, SealAppearance] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, qr_keys: QrKeyStore | None = None
    ) -> ReportSigner:
        ca = platform_ca(settings)
        signing = settings.signing
        authority = TimeStampAuthority(ca.tsa_key_source())
        if signing.level == "B-B":
            timestamper = None
        elif signing.tsa_url:
            timestamper = http_timestamper(signing.tsa_url)
        else:
            timestamper = authority.timestamper()
        return cls(
            settings=settings,
            ca=ca,
            timestamper=timestamper,
            authority=authority,
            qr_keys=qr_keys if qr_keys is not None else QrKeyStore(ca),
        )

    def key_source(self, uscc: str, name: str) -> KeySource:
        with self._lock:
            key = self._keys.get(uscc)
            if key is None:
                signing = self.settings.signing
                if signing.pkcs11_module:
                    # The token holds one key + certificate per institution, labelled by USCC.
                    key = PKCS11KeySource(
                        signing.pkcs11_module,
                        token_label=signing.pkcs11_token_label,
                        user_pin=signing.pkcs11_pin.get_secret_value(),
                        key_label=uscc,
                        extra_certs=self.asn1_roots(),
                    )
                else:
                    key = self.ca.seal_key_source(uscc, name)
                self._keys[uscc] = key
            return key

    def platform_key(self) -> KeySource:
        """The platform's own key, which seals evidence certificates (§7.6)."""
        with self._lock:
            if self._platform_key is None:
                self._platform_key = self.ca.platform_key_source()
            return self._platform_key

    def appearance(self, uscc: str, name: str) -> SealAppearance:
        with self._lock:
            look = self._appearances.get(uscc)
        if look is None:
            look = prepare_seal(name, make_dev_seal_image(name), layout=SIGNED_QR_LAYOUT)
            with self._lock:
                self._appearances.setdefault(uscc, look)
                look = self._appearances[uscc]
        return look

    def asn1_roots(self) -> list[Any]:
        from asn1crypto import x509 as asn1_x509

        return [asn1_x509.Certificate.load(der) for der in trust_roots_der(self.settings, self.ca)]

    def ltv_context(self) -> Any:
        if self.settings.signing.level != "B-LT":
            return None
        from pyhanko_certvalidator import ValidationContext

        return ValidationContext(
            trust_roots=self.asn1_roots(), crls=[self.ca.crl_der()], allow_fetching=False
        )

    def qr_url(self, code: str, facts: QrFacts | None) -> str:
        """The URL the QR encodes: with the signed payload of `facts` when there are facts
        and it fits a version-15 QR at level Q, else the plain `{base}/v/{code}`."""
        base = self.settings.public.base_url.rstrip("/")
        if facts is not None and self.qr_keys is not None:
            cose, _kid = self.qr_keys.sign(facts)
            url = signed_qr_url(base, code, cose)
            if url is not None:
                return url
            log.warning("report %s: the signed QR payload does not fit; plain QR", code)
        return f"{base}/v/{code}"

    def sign(
        self, pdf: bytes, code: str, uscc: str, name: str, facts: QrFacts | None = None
    ) -> SealedPdf:
        """Stamp and sign; a bad PDF is `Invalid`/`TooLarge`, a signing fault `Unavailable`.
        With `facts` (sealing time included) the QR carries their signed payload."""
        try:
            return seal_pdf(
                pdf,
                code,
                self.qr_url(code, facts),
                self.appearance(uscc, name),
                self.key_source(uscc, name),
                self.timestamper,
                self.settings.signing.level,
                ltv_context=self.ltv_context(),
            )
        except PdfRejected as exc:
            kind = TooLarge if exc.code == "pdf_too_large" else Invalid
            raise kind(exc.code, exc.message) from None
        except SignerError as exc:
            log.error("signing %s failed: %s (%s)", code, exc.code, exc.message)
            raise Unavailable(exc.code, "the report could not be signed; try again") from None


@dataclass(frozen=True)
class SigningJob:
    """An open code about to take its PDF: what the signer needs, read in one transaction."""

    code: str
    institution: str
    institution_name: str
    report_no: str = ""
    conclusion: str = ""
    issued_on: str = ""

    def qr_facts(self, original_sha256: str, sealed_at: int | None = None) -> QrFacts | None:
        """The facts the QR payload signs (§7.5), sealed now; None without metadata."""
        if self.conclusion not in ("pass", "fail") or not self.issued_on or not self.report_no:
            return None
        return QrFacts(
            code=self.code,
            report_no=self.report_no,
            institution=self.institution,
            conclusion="pass" if self.conclusion == "pass" else "fail",
            issued_on=self.issued_on,
            original_sha256=original_sha256,
            sealed_at=int(time.time()) if sealed_at is None else sealed_at,
        )


def signed_file(session: Session, record_id: str, role: str = ROLE_SIGNED) -> RecordFile | None:
    return session.scalars(
        select(RecordFile).where(RecordFile.record_id == record_id, RecordFile.role == role)
    ).first()


def read_verified_blob(blobs: BlobStore, sha256: str) -> bytes:
    """The blob's bytes, refusing to serve a file whose content no longer matches its name."""
    try:
        data = blobs.get(sha256)
    except (OSError, ValueError):
        raise IntegrityFault("file_missing", "the stored file is missing") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityFault("file_corrupt", "the stored file does not match its hash")
    return data


def signed_answer(session: Session, row: ReportCode, original_sha: str) -> dict[str, str]:
    """The first answer when the same PDF is sent again; 409 for a different PDF."""
    assert row.pdf_record_id is not None
    original = signed_file(session, row.pdf_record_id, ROLE_ORIGINAL)
    signed = signed_file(session, row.pdf_record_id, ROLE_SIGNED)
    if original is None or signed is None or original.sha256 != original_sha:
        raise Conflict(
            "already_sealed",
            "this report code already has a signed PDF; a corrected report needs a new code "
            "and a revocation of this one",
        )
    return {
        "record_id": row.pdf_record_id,
        "sha256": signed.sha256,
        "original_sha256": original.sha256,
    }


def check_open(row: ReportCode) -> None:
    if row.status in CLOSED_STATUSES or row.revocation_record_id:
        raise Conflict("report_closed", f"report code {row.code} is {row.status}")
    if not row.report_record_id:
        raise Conflict(
            "report_metadata_missing",
            f"PUT /api/v1/reports/{row.code} (conclusion, issued_on, approver) comes first",
        )


def check_pdf_body(pdf: bytes, limit: int) -> str:
    """The SHA-256 of a PDF body within `limit` bytes (413 `pdf_too_large`, 422 `pdf_empty`)."""
    if len(pdf) > limit:
        raise TooLarge("pdf_too_large", f"the PDF exceeds {limit} bytes")
    if not pdf:
        raise Invalid("pdf_empty", "the body is empty")
    return hashlib.sha256(pdf).hexdigest()


def own_code(session: Session, code_text: str, institution: str) -> ReportCode:
    """The caller's report code, or 404 `unknown_code` / 403 `forbidden`."""
    return load_own_code(session, institution, code_text, lock=False)


def signing_job(
    session: Session, row: ReportCode, original_sha: str
) -> SigningJob | dict[str, str]:
    """The job for an open code, or the first answer when this code was signed already."""
    if row.pdf_record_id:
        return signed_answer(session, row, original_sha)
    check_open(row)
    inst = session.get(Institution, row.institution)
    name = inst.name if inst is not None else row.institution
    meta = session.get(Record, row.report_record_id) if row.report_record_id else None
    body = (json.loads(meta.canonical).get("body") or {}) if meta is not None else {}
    return SigningJob(
        row.code,
        row.institution,
        name,
        report_no=row.report_no,
        conclusion=str(body.get("conclusion") or ""),
        issued_on=str(body.get("issued_on") or ""),
    )


def qr_stamp(verify_url: str) -> dict[str, object] | None:
    """The sealed record's `qr` member: the key id and sealing time of the signed payload
    the QR carries, or None for a plain QR."""
    if "/JZ1" not in verify_url.upper():
        return None
    try:
        signed = decode_payload(verify_url)
    except InvalidQr:
        return None
    return {"kid": signed.kid_hex, "sealed_at": signed.facts.sealed_at}


def record_signed_report(
    session: Session,
    settings: Settings,
    job: SigningJob,
    signed: SealedPdf,
    original_size: int,
    original_sha: str,
    blobs: BlobStore,
) -> dict[str, str]:
    """Append the signed-PDF report record and finish the code (the caller commits).

    In an SM3 log (§7.7) the file entries name each PDF's SM3 too, read from `blobs`."""
    current = session.get(ReportCode, job.code, populate_existing=True)
    assert current is not None
    if current.pdf_record_id:
        return signed_answer(session, current, original_sha)
    check_open(current)
    # The latest report-stage record (the metadata, itself a child of the issuance).
    parent = session.get(Record, current.report_record_id or current.issue_record_id)
    if parent is None:
        raise IntegrityFault("record_missing", "a record of this report is missing")
    now = utc_now()
    alg = loghash.of(session)

    def ref(role: str, sha: str, size: int) -> FileRef:
        return file_ref(role, sha, size, PDF_MEDIA_TYPE, alg, blobs)

    record = append_record(
        session,
        type="report",
        institution=job.institution,
        body={
            "code": current.code,
            "report_no": current.report_no,
            "stage": "sealed",
            # §7.1: the cited samples' records as they stand at signing time
            "history": report_history(session, cited_records(session, parent)),
            "original_sha256": signed.original_sha256,
            "page_count": signed.page_count,
            "signature_level": settings.signing.level,
            "qr": qr_stamp(signed.verify_url),
        },
        parents=[parent],
        files=[
            ref(ROLE_ORIGINAL, signed.original_sha256, original_size),
            ref(ROLE_SIGNED, signed.sha256, len(signed.data)),
        ],
        code=current.code,
        created_at=now,
    )
    # Only one upload can finish a code, even with two processes racing.
    done = session.execute(
        update(ReportCode)
        .where(ReportCode.code == current.code, ReportCode.pdf_record_id.is_(None))
        .values(pdf_record_id=record.id, sealed_at=now)
    )
    if getattr(done, "rowcount", 1) != 1:
        session.rollback()
        raise Conflict("already_sealed", "this report code was signed meanwhile")
    report_warnings.refresh(session, current.code, job.institution, record.id)
    return {
        "record_id": record.id,
        "sha256": signed.sha256,
        "original_sha256": signed.original_sha256,
    }


def signed_pdf_of(session: Session, code_text: str, institution: str) -> tuple[str, str]:
    """(canonical code, SHA-256 of its signed PDF) of one of the institution's codes."""
    row = load_own_code(session, institution, code_text, lock=False)
    if not row.pdf_record_id:
        raise NotFound("pdf_not_found", f"report {row.code} has no sealed PDF yet")
    signed = signed_file(session, row.pdf_record_id)
    if signed is None:
        raise IntegrityFault("record_missing", "the signed PDF's record is incomplete")
    return row.code, signed.sha256


def latest_signed_pdf(session: Session, code: str) -> str | None:
    """SHA-256 of the newest signed PDF recorded for canonical `code`, if any."""
    row = session.execute(
        select(RecordFile.sha256)
        .join(Record, Record.id == RecordFile.record_id)
        .where(Record.code == code, RecordFile.role == ROLE_SIGNED)
        .order_by(Record.created_at.desc())
    ).first()
    return str(row[0]) if row else None


def code_of_signed_pdf(session: Session, sha256: str) -> str | None:
    """The report code whose signed PDF has this SHA-256, if the platform made it."""
    row = session.execute(
        select(Record.code)
        .join(RecordFile, RecordFile.record_id == Record.id)
        .where(RecordFile.sha256 == sha256, RecordFile.role == ROLE_SIGNED)
    ).first()
    return str(row[0]) if row and row[0] else None
