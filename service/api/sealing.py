"""The sealed report PDF (INTERFACE.md §5.3): `PUT/GET /api/v1/reports/{code}/pdf`.

PUT takes the lab's PDF (`application/pdf`), stamps the QR code of
`{PUBLIC_BASE_URL}/v/{CODE}` and the institution's seal on every page and PAdES-signs it
with the institution's seal key (development CA under `var/ca`, or a PKCS#11 token when
`JZ_SIGNING__PKCS11_MODULE` is set), time-stamped per `JZ_SIGNING__LEVEL`. Both files are
stored content-addressed; one `report` evidence record names them by SHA-256 (roles
`original_pdf`, `signed_pdf`) with the code's issuance and metadata records as parents,
and the code is marked finished (`pdf_record_id`, `sealed_at`).

A code is sealed once. Sending the same PDF again answers the first result; a different
PDF is 409 `already_sealed` (a correction is a new code plus a revocation of this one).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.auth import LabDep, SignedRoute, lab_institution
from service.api.deps import SessionDep, StateDep
from service.api.idempotency import IdempotencyDep
from service.app import AppState
from service.clock import utc_now
from service.domain.codes import canonical_code
from service.domain.evidence import FileRef, append_record
from service.errors import (
    Conflict,
    Forbidden,
    IntegrityFault,
    Invalid,
    NotFound,
    TooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from service.settings import Settings
from service.storage.blobs import BlobStore
from service.storage.models import Institution, Record, RecordFile, ReportCode
from service.trust import platform_ca, trust_roots_der
from signer.ca import DevCA
from signer.errors import PdfRejected, SignerError
from signer.keys import KeySource, PKCS11KeySource
from signer.seal import seal_pdf
from signer.stamp import SealAppearance, make_dev_seal_image, prepare_seal
from signer.tsa import TimeStampAuthority, http_timestamper

log = logging.getLogger(__name__)

router = APIRouter(route_class=SignedRoute, tags=["reports"])

PDF_MEDIA_TYPE = "application/pdf"
ROLE_ORIGINAL = "original_pdf"
ROLE_SIGNED = "signed_pdf"
#: Statuses of a code that can no longer take a PDF.
CLOSED_STATUSES = frozenset({"revoked", "voided", "superseded"})


class SealedOut(BaseModel):
    record_id: str
    sha256: str
    original_sha256: str


# --- the per-process sealing machinery ---------------------------------------------------


@dataclass
class Sealer:
    """Keys, TSA and stamp material, prepared once per process (state.extras["sealer"])."""

    state: AppState
    ca: DevCA
    timestamper: Any
    #: The platform's own RFC 3161 TSA (dev CA key), also served at `POST /tsa`.
    authority: TimeStampAuthority
    _keys: dict[str, KeySource] = field(default_factory=dict)
    _appearances: dict[str, SealAppearance] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_state(cls, state: AppState) -> Sealer:
        sealer = state.extras.get("sealer")
        if isinstance(sealer, Sealer):
            return sealer
        with _SEALER_LOCK:
            sealer = state.extras.get("sealer")
            if not isinstance(sealer, Sealer):
                settings = state.settings
                ca = platform_ca(settings)
                signing = settings.signing
                authority = TimeStampAuthority(ca.tsa_key_source())
                if signing.level == "B-B":
                    timestamper = None
                elif signing.tsa_url:
                    timestamper = http_timestamper(signing.tsa_url)
                else:
                    timestamper = authority.timestamper()
                sealer = cls(state=state, ca=ca, timestamper=timestamper, authority=authority)
                state.extras["sealer"] = sealer
        assert isinstance(sealer, Sealer)
        return sealer

    def key_source(self, uscc: str, name: str) -> KeySource:
        with self._lock:
            key = self._keys.get(uscc)
            if key is None:
                signing = self.state.settings.signing
                if signing.pkcs11_module:
                    # The token holds one key + certificate per institution, labelled by USCC.
                    key = PKCS11KeySource(
                        signing.pkcs11_module,
                        token_label=signing.pkcs11_token_label,
                        user_pin=signing.pkcs11_pin.get_secret_value(),
                        key_label=uscc,
                        extra_certs=_asn1_roots(self.state.settings, self.ca),
                    )
                else:
                    key = self.ca.seal_key_source(uscc, name)
                self._keys[uscc] = key
            return key

    def appearance(self, uscc: str, name: str) -> SealAppearance:
        with self._lock:
            look = self._appearances.get(uscc)
        if look is None:
            look = prepare_seal(name, make_dev_seal_image(name))
            with self._lock:
                self._appearances.setdefault(uscc, look)
                look = self._appearances[uscc]
        return look

    def ltv_context(self) -> Any:
        if self.state.settings.signing.level != "B-LT":
            return None
        from pyhanko_certvalidator import ValidationContext

        return ValidationContext(
            trust_roots=_asn1_roots(self.state.settings, self.ca),
            crls=[self.ca.crl_der()],
            allow_fetching=False,
        )

    def seal(self, pdf: bytes, code: str, uscc: str, name: str) -> Any:
        base = self.state.settings.public.base_url.rstrip("/")
        return seal_pdf(
            pdf,
            code,
            f"{base}/v/{code}",
            self.appearance(uscc, name),
            self.key_source(uscc, name),
            self.timestamper,
            self.state.settings.signing.level,
            ltv_context=self.ltv_context(),
        )


_SEALER_LOCK = threading.Lock()


def _asn1_roots(settings: Settings, ca: DevCA) -> list[Any]:
    from asn1crypto import x509 as asn1_x509

    return [asn1_x509.Certificate.load(der) for der in trust_roots_der(settings, ca)]


# --- helpers -------------------------------------------------------------------------------


def own_code(session: Session, code_text: str, institution: str) -> ReportCode:
    """The caller's report code, or 404 `unknown_code` / 403 `forbidden`."""
    code = canonical_code(code_text)
    row = session.get(ReportCode, code)
    if row is None:
        raise NotFound("unknown_code", f"no report code {code}")
    if row.institution != institution:
        raise Forbidden("forbidden", "this report code belongs to another institution")
    return row


def sealed_file(session: Session, record_id: str, role: str = ROLE_SIGNED) -> RecordFile | None:
    return session.scalars(
        select(
            RecordFile).where(RecordFile.record_id == record_id, RecordFile.role == role)
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


def _answer_existing(session: Session, row: ReportCode, original_sha: str) -> dict[str, str]:
    """The first answer when the same PDF is sent again; 409 for a different PDF."""
    assert row.pdf_record_id is not None
    original = sealed_file(session, row.pdf_record_id, ROLE_ORIGINAL)
    signed = sealed_file(session, row.pdf_record_id, ROLE_SIGNED)
    if original is None or signed is None or original.sha256 != original_sha:
        raise Conflict(
            "already_sealed",
            "this report code already has a sealed PDF; a corrected report needs a new code "
            "and a revocation of this one",
        )
    return {
        "record_id": row.pdf_record_id,
        "sha256": signed.sha256,
        "original_sha256": original.sha256,
    }


def _check_open(session: Session, row: ReportCode) -> None:
    if row.status in CLOSED_STATUSES or row.revocation_record_id:
        raise Conflict("report_closed", f"report code {row.code} is {row.status}")
    if not row.report_record_id:
        raise Conflict(
            "report_metadata_missing",
            f"PUT /api/v1/reports/{row.code} (conclusion, issued_on, approver) comes first",
        )


# --- routes --------------------------------------------------------------------------------


@router.put(
    "/api/v1/reports/{code}/pdf",
    response_model=SealedOut,
    summary="Upload the report PDF; answer the sealed (QR-stamped, PAdES-signed) version",
)
async def put_report_pdf(
    code: str,
    request: Request,
    caller: LabDep,
    state: StateDep,
    session: SessionDep,
    idem: IdempotencyDep,
) -> Response:
    institution = lab_institution(caller)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != PDF_MEDIA_TYPE:
        raise UnsupportedMediaType(
            "unsupported_media_type",
            f"the body must be {PDF_MEDIA_TYPE}, not {content_type!r}",
        )
    replayed = idem.replay(session)
    if replayed is not None:
        return replayed
    row = own_code(session, code, institution)
    limit = state.settings.security.max_pdf_bytes
    pdf = await request.body()
    if len(pdf) > limit:
        raise TooLarge("pdf_too_large", f"the PDF exceeds {limit} bytes")
    if not pdf:
        raise Invalid("pdf_empty", "the body is empty")
    original_sha = hashlib.sha256(pdf).hexdigest()
    if row.pdf_record_id:
        return idem.run(session, lambda: (200, _answer_existing(session, row, original_sha)))
    _check_open(session, row)
    inst = session.get(Institution, institution)
    name = inst.name if inst is not None else institution
    canonical = row.code
    session.rollback()  # end the read transaction before the slow part (SQLite locks)

    sealer = await run_in_threadpool(Sealer.for_state, state)
    try:
        sealed = await run_in_threadpool(sealer.seal, pdf, canonical, institution, name)
    except PdfRejected as exc:
        kind = TooLarge if exc.code == "pdf_too_large" else Invalid
        raise kind(exc.code, exc.message) from None
    except SignerError as exc:
        log.error("sealing %s failed: %s (%s)", canonical, exc.code, exc.message)
        raise Unavailable(exc.code, "the report could not be sealed; try again") from None

    state.blobs.put(pdf)
    state.blobs.put(sealed.data)
    from service.api.public import prime_sealed_signature  # the public view's verdict store

    prime_sealed_signature(state, canonical, sealed.sha256, sealed.data)

    def work() -> tuple[int, dict[str, str]]:
        current = session.get(ReportCode, canonical, populate_existing=True)
        assert current is not None
        if current.pdf_record_id:
            return 200, _answer_existing(session, current, original_sha)
        _check_open(session, current)
        # The latest report-stage record (the metadata, itself a child of the issuance).
        parents = [session.get(Record, current.report_record_id or current.issue_record_id)]
        if any(p is None for p in parents):
            raise IntegrityFault("record_missing", "a record of this report is missing")
        now = utc_now()
        record = append_record(
            session,
            type="report",
            institution=institution,
            body={
                "code": current.code,
                "report_no": current.report_no,
                "stage": "sealed",
                "original_sha256": sealed.original_sha256,
                "page_count": sealed.page_count,
                "signature_level": state.settings.signing.level,
            },
            parents=[p for p in parents if p is not None],
            files=[
                FileRef(ROLE_ORIGINAL, sealed.original_sha256, len(pdf), PDF_MEDIA_TYPE),
                FileRef(ROLE_SIGNED, sealed.sha256, len(sealed.data), PDF_MEDIA_TYPE),
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
            raise Conflict("already_sealed", "this report code was sealed meanwhile")
        return 200, {
            "record_id": record.id,
            "sha256": sealed.sha256,
            "original_sha256": sealed.original_sha256,
        }

    return idem.run(session, work)


@router.get(
    "/api/v1/reports/{code}/pdf",
    response_class=Response,
    responses={200: {"content": {PDF_MEDIA_TYPE: {}}}},
    summary="The sealed report PDF",
)
def get_report_pdf(code: str, caller: LabDep, state: StateDep, session: SessionDep) -> Response:
    row = own_code(session, code, lab_institution(caller))
    if not row.pdf_record_id:
        raise NotFound("pdf_not_found", f"report {row.code} has no sealed PDF yet")
    signed = sealed_file(session, row.pdf_record_id)
    if signed is None:
        raise IntegrityFault("record_missing", "the sealed PDF's record is incomplete")
    data = read_verified_blob(state.blobs, signed.sha256)
    return pdf_response(data, row.code, signed.sha256)


def pdf_response(data: bytes, code: str, sha256: str) -> Response:
    return Response(
        data,
        media_type=PDF_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{code}.pdf"',
            "ETag": f'"{sha256}"',
            "X-Content-SHA256": sha256,
            "Cache-Control": "no-cache",
        },
    )
