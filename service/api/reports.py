"""Lab and auditor endpoints for report codes, report metadata, revocation, numbering, proofs.

Every route here is signed (§5.1); POST/PUT honour `Idempotency-Key` (§5.2).
Isolation: a lab key acting on another institution's report code gets 403 `forbidden`
(codes are printed on paper, their existence is no secret); another institution's
record is answered 404 `record_not_found` or 422 `unknown_parent`, like a missing one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool

from service.api.auth import (
    AuditorDep,
    CallerDep,
    LabDep,
    SignedRoute,
    check_institution_access,
    lab_institution,
    nonce_refusal,
    purge_if_due,
)
from service.api.deps import SessionDep, SettingsDep, StateDep
from service.api.fastpath import plain_signed_json, verify_in_memory
from service.api.idempotency import IdempotencyDep, dump_answer
from service.api.schemas import Proof
from service.domain import reports as domain
from service.domain.accounts import validate_uscc
from service.domain.proofs import build_proof
from service.domain.records import find_record
from service.errors import JianzhengError, NotFound
from service.state import ServiceState

router = APIRouter(route_class=SignedRoute, tags=["reports"])

EXAMPLE_CODE = "440300267K3QF9XA2M0"
EXAMPLE_RECORD_ID = "01JD3Q2Y7ZK1M8R0F4T6W9XH5C"

CodePath = Annotated[
    str,
    Path(
        max_length=64,
        description="report code in any case, with or without `-` or spaces",
        examples=["440300-26-7K3QF-9XA2M-0"],
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- models


class CodeRequest(_Strict):
    report_no: str = Field(min_length=1, max_length=domain.MAX_REPORT_NO_CHARS)
    project_id: str = Field(min_length=1, max_length=26, description="record id of the project")
    test_items: list[domain.TestItemName] | None = Field(
        default=None,
        min_length=1,
        max_length=domain.MAX_CODE_TEST_ITEMS,
        description="optional: the test items (检测项目/参数, as test records name their "
        "`test_item`) the report will cover. Given, they are checked against the lab's "
        "registered qualification scope now (422 `out_of_scope` / `qualification_expired`, "
        "docs/registry.md); absent, the check falls on the report metadata only",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"report_no": "BG-2026-000123", "project_id": EXAMPLE_RECORD_ID}]
        },
    )


class CodeIssued(BaseModel):
    code: str
    verify_url: str
    record_id: str
    leaf_hash: str
    report_no: str
    year: int

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": EXAMPLE_CODE,
                    "verify_url": f"https://jz.example.gov.cn/v/{EXAMPLE_CODE}",
                    "record_id": EXAMPLE_RECORD_ID,
                    "leaf_hash": "5f1c…",
                    "report_no": "BG-2026-000123",
                    "year": 2026,
                }
            ]
        }
    )


class CodeState(BaseModel):
    code: str
    printed: str
    verify_url: str
    institution: str
    year: int
    report_no: str
    status: str
    issued_at: str
    sealed_at: str | None
    project_record_id: str
    issue_record_id: str
    report_record_id: str | None
    pdf_record_id: str | None
    revocation_record_id: str | None
    superseded_by: str | None


class MetadataRequest(_Strict):
    """The report's metadata. Its `history` (§7.1) is written by the platform: a request
    that sends one is refused (422 `history_not_allowed`)."""

    conclusion: Literal["pass", "fail"]
    issued_on: date
    approver: str = Field(min_length=1, max_length=100)
    parents: list[Annotated[str, Field(min_length=1, max_length=26)]] = Field(
        min_length=1, max_length=256, description="record ids of samples, test records, media"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "conclusion": "pass",
                    "issued_on": "2026-11-20",
                    "approver": "张三",
                    "parents": ["01JD3Q4A1B2C3D4E5F6G7H8J9K", "01JD3Q5M6N7P8Q9R0S1T2V3W4X"],
                }
            ]
        },
    )

    @model_validator(mode="before")
    @classmethod
    def _no_history(cls, data: Any) -> Any:
        if isinstance(data, dict) and "history" in data:
            raise PydanticCustomError(
                "history_not_allowed",
                "the platform writes a report's history (INTERFACE §7.1); do not send it",
            )
        return data


class WarningOut(BaseModel):
    code: str = Field(description="a §7.2 warning code, e.g. custody_receipt_missing")
    record_id: str | None
    detail: str


class MetadataRecorded(BaseModel):
    code: str
    record_id: str
    leaf_hash: str
    status: str
    nonconforming: bool
    evidence_complete: bool = Field(
        description="false when a custody step is missing or a seal check failed (§7.2)"
    )
    warnings: list[WarningOut] = Field(description="what is missing or late (§7.2)")


class RevocationRequest(_Strict):
    reason: str = Field(min_length=1, max_length=domain.MAX_REASON_CHARS)
    superseded_by: str | None = Field(default=None, max_length=64)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "reason": "报告数据录入错误，已重新出具",
                    "superseded_by": "440300-26-Q2M8T-7HXC1-2",
                },
                {"reason": "委托方撤回委托", "superseded_by": None},
            ]
        },
    )


class RevocationRecorded(BaseModel):
    code: str
    record_id: str
    leaf_hash: str
    status: str
    superseded_by: str | None
    revocation_subject: str


class VoidRequest(_Strict):
    report_no: str = Field(min_length=1, max_length=domain.MAX_REPORT_NO_CHARS)
    reason: str = Field(min_length=1, max_length=domain.MAX_REASON_CHARS)
    year: int | None = Field(
        default=None, ge=domain.MIN_YEAR, le=9999, description="default: the current year (CST)"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"report_no": "BG-2026-000124", "reason": "打印错误，编号作废"}]
        },
    )


class VoidRecorded(BaseModel):
    record_id: str
    leaf_hash: str
    year: int
    report_no: str
    code: str | None


class NumberingAudit(BaseModel):
    institution: str
    year: int
    generated_at: str
    unfinished_after_s: int
    start: int
    issued: list[dict[str, Any]]
    voided: list[dict[str, Any]]
    unfinished: list[dict[str, Any]]
    missing: list[dict[str, Any]]
    series: list[dict[str, Any]]
    unsequenced: list[str]
    counts: dict[str, int]


class Pending(BaseModel):
    status: Literal["pending"]


# --------------------------------------------------------------------------- routes


def post_report_code(
    body: CodeRequest,
    caller: LabDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Any:
    """The general path (also every request the fast path declines: see `_IssueRoute`)."""
    institution = lab_institution(caller)
    return idem.run(
        session,
        lambda: (
            201,
            domain.issue_code(
                session,
                cache=state.issuance_cache,
                institution=institution,
                report_no=body.report_no,
                project_id=body.project_id,
                base_url=state.settings.public.base_url,
                test_items=body.test_items,
            ),
        ),
    )


class _IssueRoute(SignedRoute):
    """`POST /api/v1/report-codes` with a fast path for the common request.

    A signed JSON request without `Idempotency-Key`, from a lab key, project and region
    this process already knows (`state.issuance_cache`), on PostgreSQL, is checked
    (signature in memory) and issued in one autocommit statement that also stores the
    nonce: no FastAPI body validation, no ORM, one round trip. The statement runs on the
    event loop through the async pool the app's lifespan opens (as under uvicorn;
    `domain.issue_code_signed_async`, where concurrent issuances share one statement and
    one commit: `SignedIssueBatcher`), or else in one worker thread on the engine's pool
    (e.g. a test client that did not run the lifespan; `domain.issue_code_signed`).
    Everything else, and every body the fast check does not accept as plainly valid,
    takes the general route (`post_report_code`), which answers exactly as before. Once
    the nonce is stored the fast path never falls back: what it did not insert,
    `domain.issue_code` settles.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        general = super().get_route_handler()

        async def handler(request: Request) -> Response:
            fast = await _fast_issue(request)
            return fast if fast is not None else await general(request)

        return handler


_JSON = "application/json"
_FAST_KEYS = frozenset({"report_no", "project_id"})
_PROJECT_ID_MAX_CHARS = 26


def _plain_code_request(body: bytes) -> tuple[str, str] | None:
    """(report_no, project_id) if `body` is a plainly valid CodeRequest, else None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.keys() != _FAST_KEYS:
        return None
    report_no, project_id = data["report_no"], data["project_id"]
    if not (isinstance(report_no, str) and isinstance(project_id, str)):
        return None
    if not (0 < len(report_no) <= domain.MAX_REPORT_NO_CHARS):
        return None
    if not (0 < len(project_id) <= _PROJECT_ID_MAX_CHARS):
        return None
    try:
        report_no = domain.check_report_no(report_no)
    except JianzhengError:
        return None
    return report_no, project_id


async def _fast_issue(request: Request) -> Response | None:
    state: ServiceState = request.app.state.jz
    if not state.on_postgresql:
        return None
    signed = await plain_signed_json(request)
    if signed is None:
        return None
    institution = signed.institution
    plain = _plain_code_request(signed.body)
    if plain is None:
        return None
    report_no, project_id = plain
    known = state.issuance_cache.known(institution, project_id)
    if known is None:
        return None
    project, region = known
    now = time.time()
    nonce = verify_in_memory(state, request, signed, now)
    key = signed.key
    pool = state.async_pool
    if pool is not None and pool.loop is asyncio.get_running_loop():
        # On the event loop: the one statement, no worker thread.
        stored, answer = await domain.issue_code_signed_async(
            pool,
            key_id=key.key_id,
            nonce=nonce,
            seen_at=int(now),
            institution=institution,
            report_no=report_no,
            project=project,
            region=region,
            base_url=state.settings.public.base_url,
            alg=state.settings.evidence.hash,
        )
        if not (stored and answer is not None and not _purge_due(state, now)):
            answer = await run_in_threadpool(
                _settle, state, key.key_id, stored, answer, int(now), institution, report_no,
                project.id,
            )
    else:
        answer = await run_in_threadpool(
            _issue_signed, state, key.key_id, nonce, int(now), institution, report_no, project,
            region,
        )
    return Response(dump_answer(CodeIssued, answer), status_code=201, media_type=_JSON)


def _purge_due(state: ServiceState, now: float) -> bool:
    return state.purge.due(now)


def _issue_signed(
    state: ServiceState,
    key_id: str,
    nonce: str,
    seen_at: int,
    institution: str,
    report_no: str,
    project: domain.ProjectRef,
    region: str,
) -> dict[str, Any]:
    """The fast path in a worker thread (sync psycopg from the engine's pool)."""
    stored, answer = domain.issue_code_signed(
        state.engine,
        key_id=key_id,
        nonce=nonce,
        seen_at=seen_at,
        institution=institution,
        report_no=report_no,
        project=project,
        region=region,
        base_url=state.settings.public.base_url,
    )
    return _settle(state, key_id, stored, answer, seen_at, institution, report_no, project.id)


def _settle(
    state: ServiceState,
    key_id: str,
    stored: bool,
    answer: dict[str, Any] | None,
    seen_at: int,
    institution: str,
    report_no: str,
    project_id: str,
) -> dict[str, Any]:
    """After the fast statement: refuse the nonce, purge if due, or settle a non-insert."""
    if not stored:
        with state.engine.connect() as conn:
            raise nonce_refusal(state, conn, key_id)
    purge_if_due(state, seen_at)
    if answer is not None:
        return answer
    # Nothing inserted (number taken, stale project, code collision): the general
    # issuance gives the authoritative answer (409, 422, or a code after all).
    with state.sessions() as session:
        settled = domain.issue_code(
            session,
            cache=state.issuance_cache,
            institution=institution,
            report_no=report_no,
            project_id=project_id,
            base_url=state.settings.public.base_url,
        )
        session.commit()
    return settled


router.add_api_route(
    "/api/v1/report-codes",
    post_report_code,
    methods=["POST"],
    status_code=201,
    response_model=CodeIssued,
    summary="Issue a report code for a report number",
    responses={409: {"description": "`duplicate_report_no`"}},
    route_class_override=_IssueRoute,
)


@router.get(
    "/api/v1/reports/{code}",
    response_model=CodeState,
    summary="State of one of the caller's report codes",
)
def get_report(code: CodePath, caller: LabDep, session: SessionDep, settings: SettingsDep) -> Any:
    row = domain.load_own_code(session, lab_institution(caller), code, lock=False)
    return domain.code_json(row, settings.public.base_url)


@router.put(
    "/api/v1/reports/{code}",
    response_model=MetadataRecorded,
    summary="Record the report's metadata (conclusion, issue date, approver, parents)",
)
def put_report(
    code: CodePath,
    body: MetadataRequest,
    caller: LabDep,
    session: SessionDep,
    idem: IdempotencyDep,
) -> Any:
    meta = domain.ReportMetadata(body.conclusion, body.issued_on, body.approver, body.parents)
    institution = lab_institution(caller)
    return idem.run(
        session,
        lambda: (
            200,
            domain.put_metadata(session, institution=institution, code_text=code, meta=meta),
        ),
    )


@router.post(
    "/api/v1/reports/{code}/revocation",
    status_code=201,
    response_model=RevocationRecorded,
    summary="Revoke (or supersede) a report; also written to the registry's revoke()",
)
def post_revocation(
    code: CodePath,
    body: RevocationRequest,
    caller: LabDep,
    session: SessionDep,
    idem: IdempotencyDep,
) -> Any:
    institution = lab_institution(caller)
    return idem.run(
        session,
        lambda: (
            201,
            domain.revoke_report(
                session,
                institution=institution,
                code_text=code,
                reason=body.reason,
                superseded_by=body.superseded_by,
            ),
        ),
    )


@router.post(
    "/api/v1/numbering/voids",
    status_code=201,
    response_model=VoidRecorded,
    summary="Void a report number with a reason (a numbering_void record)",
)
def post_void(body: VoidRequest, caller: LabDep, session: SessionDep, idem: IdempotencyDep) -> Any:
    institution = lab_institution(caller)
    return idem.run(
        session,
        lambda: (
            201,
            domain.void_number(
                session,
                institution=institution,
                report_no=body.report_no,
                reason=body.reason,
                year=body.year,
            ),
        ),
    )


@router.get(
    "/api/v1/audit/numbering",
    response_model=NumberingAudit,
    tags=["audit"],
    summary="Report numbering of one institution and year: issued, voided, unfinished, missing",
)
def get_numbering(
    caller: AuditorDep,
    session: SessionDep,
    institution: Annotated[str, Query(max_length=40, examples=["91440300MA5FXXXXXX"])],
    year: Annotated[int, Query(ge=domain.MIN_YEAR, le=9999, examples=[2026])],
    unfinished_after_s: Annotated[
        int, Query(ge=0, le=366 * 24 * 3600, description="seconds without a signed PDF")
    ] = domain.DEFAULT_UNFINISHED_AFTER_S,
    start: Annotated[int, Query(ge=0, le=10**9, description="first expected number")] = 1,
) -> Any:
    institution = validate_uscc(institution)
    check_institution_access(session, caller, institution)
    return domain.numbering_audit(
        session,
        institution=institution,
        year=year,
        unfinished_after_s=unfinished_after_s,
        start=start,
    )


@router.get(
    "/api/v1/records/{record_id}/proof",
    summary="Inclusion proof of a record (jianzheng-proof/1), or 202 while not anchored",
    responses={
        200: {"model": Proof, "description": "the proof (INTERFACE §3)"},
        202: {"model": Pending, "description": "not anchored yet"},
        404: {"description": "`record_not_found` (also for another institution's record)"},
    },
)
def get_proof(
    record_id: Annotated[str, Path(max_length=26, examples=[EXAMPLE_RECORD_ID])],
    caller: CallerDep,
    session: SessionDep,
    state: StateDep,
) -> Any:
    record = find_record(session, record_id)
    if record is None:
        raise NotFound("record_not_found", f"no record {record_id!r}")
    check_institution_access(session, caller, record.institution)
    proof = build_proof(session, record_id, state.chain)
    if proof is None:
        return JSONResponse({"status": "pending"}, status_code=202)
    return proof
