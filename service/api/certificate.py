"""`GET /api/v1/reports/{code}/certificate` (INTERFACE §7.6): the report's evidence
certificate (存证证书), a PAdES-sealed A4 PDF (service/domain/certificate.py).

Who: the report's lab, and auditors (and, where they exist, agencies) whose region holds
the lab. 202 with the parts still pending while any record is not anchored yet, like the
bundle.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.auth import CallerDep, SignedRoute, check_institution_access
from service.api.deps import SessionDep, StateDep
from service.clock import utc_now
from service.domain.bundle import PENDING_RETRY_AFTER_S, BundlePending
from service.domain.certificate import certificate_facts, issue_certificate
from service.domain.reports.lifecycle import code_institution
from service.state import ServiceState

router = APIRouter(route_class=SignedRoute, tags=["reports"])


@router.get(
    "/api/v1/reports/{code}/certificate",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the evidence certificate"},
        202: {"description": "parts still pending anchor"},
    },
    summary="The report's evidence certificate (存证证书), a PAdES-sealed PDF",
)
async def get_certificate(
    code: str, caller: CallerDep, state: StateDep, session: SessionDep
) -> Any:
    return await run_in_threadpool(_certificate, state, session, code, caller)


def _certificate(state: ServiceState, session: Session, code: str, caller: Any) -> Response:
    institution = code_institution(session, code)
    if institution is not None:  # an unknown code is plan_bundle's 404
        check_institution_access(session, caller, institution)
    try:
        facts = certificate_facts(session, code, state.chain)
    except BundlePending as pending:
        return JSONResponse(
            pending.as_json(), status_code=202,
            headers={"Retry-After": str(PENDING_RETRY_AFTER_S)},
        )
    session.close()
    pdf = issue_certificate(
        state.signer.get(), facts, state.settings.public.base_url, utc_now()
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="jianzheng-certificate-{facts.code}.pdf"',
            "Cache-Control": "no-store",
        },
    )
