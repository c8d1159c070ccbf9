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

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from service.api.auth import AuditorDep, SignedRoute, check_institution_access
from service.api.deps import SessionDep, StateDep
from service.api.schemas import BundlePending as BundlePendingOut
from service.domain.accounts import audit_scope
from service.domain.bundle import PENDING_RETRY_AFTER_S, BundlePending, bundle_stream, plan_bundle
from service.domain.console.stats import (
    DIMENSIONS,
    MEASURES,
    PERIODS,
    StatsQuery,
    stats,
)
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


@router.get(
    "/api/v1/audit/stats",
    summary="Statistics of the caller's region: the numbers behind the console's charts",
    description=(
        "Reports grouped by `dimension` (`period`: per `day`/`week`/`month` of the report's "
        "issue date; `institution`; `test_item`; `conclusion`; `status`), each row with "
        "`total`, `pass`, `fail` and `pass_rate` (pass / (pass + fail), null with neither); "
        "rows other than periods are ordered by `measure`, largest first. Filters: `from`, "
        "`to` (issue dates, inclusive), `institution` (USCC), `test_item`. An auditor or "
        "agency key; the caller's region bounds every count (docs/console.md)."
    ),
)
def get_stats(
    caller: AuditorDep,
    session: SessionDep,
    dimension: Annotated[str, Query(max_length=16, description=" | ".join(DIMENSIONS))] = "period",
    period: Annotated[str, Query(max_length=8, description=" | ".join(PERIODS))] = "day",
    measure: Annotated[str, Query(max_length=12, description=" | ".join(MEASURES))] = "total",
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to")] = None,
    institution: Annotated[str | None, Query(max_length=18)] = None,
    test_item: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    query = StatsQuery(dimension, period, measure, date_from, date_to, institution,
                       test_item).check()
    scope = audit_scope(session, caller.auditor_id)
    return {"region": scope.region, **stats(session, scope, query)}
