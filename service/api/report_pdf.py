"""The signed report PDF (INTERFACE §5.3): `PUT/GET /api/v1/reports/{code}/pdf`.

HTTP only: the media type, the body and its limit, idempotency, and the answer. Stamping,
signing and the signed-report record are domain work (service/domain/signing.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.auth import LabDep, SignedRoute, lab_institution
from service.api.deps import SessionDep, StateDep
from service.api.idempotency import Idempotency, IdempotencyDep
from service.domain import public, signing
from service.domain.signing import PDF_MEDIA_TYPE
from service.errors import UnsupportedMediaType
from service.state import ServiceState

router = APIRouter(route_class=SignedRoute, tags=["reports"])


class SignedOut(BaseModel):
    record_id: str
    sha256: str
    original_sha256: str


@router.put(
    "/api/v1/reports/{code}/pdf",
    response_model=SignedOut,
    summary="Upload the report PDF; answer the signed (QR-stamped, PAdES-signed) version",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The report PDF exactly as the lab produced it (`Content-Type: "
            "application/pdf`); the platform stamps the QR code and seal, signs it and stores "
            "both files. Sending the same PDF again answers the first result; another PDF is "
            "409 `already_sealed`.",
            "content": {PDF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
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
    return await run_in_threadpool(
        _put_pdf, state, session, idem, code, institution, await request.body()
    )


def _put_pdf(
    state: ServiceState,
    session: Session,
    idem: Idempotency,
    code: str,
    institution: str,
    pdf: bytes,
) -> Response:
    """The work of the PUT, in a worker thread (database, signing, blob fsyncs)."""
    replayed = idem.replay(session)
    if replayed is not None:
        return replayed
    row = signing.own_code(session, code, institution)
    original_sha = signing.check_pdf_body(pdf, state.settings.security.max_pdf_bytes)
    job = signing.signing_job(session, row, original_sha)
    if isinstance(job, dict):  # signed before: the same PDF answers the first result
        return idem.run(session, lambda: (200, job))
    session.rollback()  # end the read transaction before the slow part (SQLite locks)

    signed = state.signer.get().sign(
        pdf, job.code, job.institution, job.institution_name, job.qr_facts(original_sha)
    )
    state.blobs.put(pdf)
    state.blobs.put(signed.data)
    public.prime_verdict(
        state.views.get(), state.verdict_primer.get(), job.code, signed.sha256, signed.data
    )
    return idem.run(
        session,
        lambda: (
            200,
            signing.record_signed_report(
                session, state.settings, job, signed, len(pdf), original_sha, state.blobs
            ),
        ),
    )


@router.get(
    "/api/v1/reports/{code}/pdf",
    response_class=Response,
    responses={200: {"content": {PDF_MEDIA_TYPE: {}}}},
    summary="The signed report PDF",
)
def get_report_pdf(code: str, caller: LabDep, state: StateDep, session: SessionDep) -> Response:
    canonical, sha256 = signing.signed_pdf_of(session, code, lab_institution(caller))
    data = signing.read_verified_blob(state.blobs, sha256)
    return pdf_response(data, canonical, sha256)


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
