"""Report warnings (INTERFACE §7.2) for the lab and for auditors: what is missing or late.

- `GET /api/v1/warnings`: the caller's own reports' warnings;
- `GET /api/v1/audit/warnings`: every institution's, or those of the auditor's region;
  filters `region` (province, city or county code), `institution`, `code` (a warning
  code), `report_code`, `since` / `until` (dates, China time), paginated by `after` (the
  last `id` seen) and `limit`.

A report's warnings are those of its latest record, kept when that record was written
(service/domain/warnings.py); the public page shows the same list.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from service.api.auth import AuditorDep, LabDep, SignedRoute, check_institution_access
from service.api.deps import SessionDep
from service.clock import CHINA_TZ
from service.domain import warnings as report_warnings
from service.domain.accounts import audit_scope, region_prefix, validate_region
from service.domain.codes import canonical_code
from service.errors import Forbidden

router = APIRouter(route_class=SignedRoute, tags=["rules"])

MAX_LIST = 500
_Limit = Query(default=100, ge=1, le=MAX_LIST)
_After = Query(default=0, ge=0, le=2**63 - 1, description="page after this id")


class WarningRow(BaseModel):
    id: int
    report_code: str
    institution: str
    region: str
    code: str = Field(
        description="custody_seal_missing | custody_witness_missing | custody_receipt_missing "
        "| seal_check_failed | test_record_uncited | contract_late | test_data_late | "
        "media_late | test_plan_late | onsite_without_plan | … (§7.2)"
    )
    record_id: str | None = Field(description="the record the warning is about")
    detail: str = Field(description="the warning in plain Chinese")
    report_record_id: str = Field(description="the report record the warning was computed for")
    recorded_at: str


def _day(value: date | None, *, end: bool = False) -> datetime | None:
    if value is None:
        return None
    start = datetime.combine(value + timedelta(days=1) if end else value, time(), CHINA_TZ)
    return start


@router.get(
    "/api/v1/warnings",
    response_model=list[WarningRow],
    summary="Warnings of the caller's reports (custody gaps, late uploads, …)",
)
def lab_warnings(
    caller: LabDep,
    session: SessionDep,
    code: Annotated[
        str | None,
        Query(max_length=40, description="a §7.2 warning code",
              examples=["custody_receipt_missing"]),
    ] = None,
    report_code: Annotated[str | None, Query(max_length=64)] = None,
    limit: int = _Limit,
    after: int = _After,
) -> Any:
    return report_warnings.list_warnings(
        session,
        institution=caller.institution,
        code=code,
        report_code=canonical_code(report_code) if report_code else None,
        after_id=after,
        limit=limit,
    )


@router.get(
    "/api/v1/audit/warnings",
    response_model=list[WarningRow],
    tags=["audit"],
    summary="Report warnings of every institution, or of a region, institution or code",
)
def audit_warnings(
    caller: AuditorDep,
    session: SessionDep,
    region: Annotated[
        str | None, Query(max_length=6, description="a province, city or county code")
    ] = None,
    institution: Annotated[str | None, Query(max_length=18)] = None,
    code: Annotated[
        str | None,
        Query(max_length=40, description="a §7.2 warning code",
              examples=["custody_receipt_missing"]),
    ] = None,
    report_code: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[date | None, Query(description="first day (China time)")] = None,
    until: Annotated[date | None, Query(description="last day (China time)")] = None,
    limit: int = _Limit,
    after: int = _After,
) -> Any:
    scope = audit_scope(session, caller.auditor_id)
    prefix = None
    if region is not None:
        prefix = region_prefix(validate_region(region))
        if scope.region is not None and not prefix.startswith(region_prefix(scope.region)):
            raise Forbidden(
                "forbidden", f"this auditor account is limited to region {scope.region}"
            )
    elif scope.region is not None:
        prefix = region_prefix(scope.region)
    if institution is not None:
        check_institution_access(session, caller, institution)
    return report_warnings.list_warnings(
        session,
        institution=institution,
        region_prefix=prefix,
        code=code,
        report_code=canonical_code(report_code) if report_code else None,
        since=_day(since),
        until=_day(until, end=True),
        after_id=after,
        limit=limit,
    )
