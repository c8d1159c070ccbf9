"""Auditor API: `GET /api/v1/audit/reports/{code}/bundle` (INTERFACE.md §3, §5.3).

Auditor keys only (a lab key gets 403 `forbidden`). Answers:

- 200 `application/zip`: the `jianzheng-bundle/1` ZIP (service/domain/bundle.py);
- 202 `application/json` `{"status": "pending", "code", "pending": [{record_id, type,
  reason}], "retry_after_s"}` with `Retry-After`, while any record of the report is not
  anchored yet or its revocation is not written to the chain (the same convention as
  `GET /api/v1/records/{id}/proof`): a bundle is never handed out half-anchored;
- 404 `unknown_code`; 409 `evidence_unavailable` when nothing of the report can be proven
  from the database (it was destroyed; the chain still holds the anchors);
- 422 `bundle_too_large` past MAX_BUNDLE_RECORDS / MAX_BUNDLE_FILES.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from service.api.auth import AuditorDep, SignedRoute, check_institution_access
from service.api.deps import SessionDep, StateDep
from service.api.schemas import BundlePending as BundlePendingOut
from service.domain.bundle import PENDING_RETRY_AFTER_S, BundlePending, bundle_stream, plan_bundle
from service.domain.reports import code_institution

router = APIRouter(route_class=SignedRoute, tags=["audit"])


@router.get(
    "/api/v1/audit/reports/{code}/bundle",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "the evidence bundle"},
        202: {"model": BundlePendingOut, "description": "parts still pending anchor"},
    },
    summary="A report's evidence bundle (jianzheng-bundle/1)",
)
def get_bundle(code: str, caller: AuditorDep, state: StateDep, session: SessionDep) -> Any:
    institution = code_institution(session, code)
    if institution is not None:  # an unknown code is plan_bundle's 404
        check_institution_access(session, caller, institution)
    try:
        plan = plan_bundle(session, code, state.chain)
    except BundlePending as pending:
        return JSONResponse(
            pending.as_json(),
            status_code=202,
            headers={"Retry-After": str(PENDING_RETRY_AFTER_S)},
        )
    session.close()  # everything is read; the blob copy needs no database
    chunks, length = bundle_stream(plan, state.blobs)
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={
            "Content-Length": str(length),
            "Content-Disposition": f'attachment; filename="jianzheng-bundle-{plan.code}.zip"',
            "Cache-Control": "no-store",
        },
    )
