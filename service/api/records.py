"""Lab API for the records of the traceable chain (INTERFACE §5.3 `POST /api/v1/{collection}`),
witness keys, resumable uploads (service/api/uploads.py), flags and the nonconforming
ledger (lab and auditor views).

Every route is signed (§5.1); POSTs honour `Idempotency-Key` (§5.2). Each collection's
fields and parent rules are documented on its request model (service/domain/records/inputs.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from service.api.auth import (
    AuditorDep,
    Caller,
    CallerDep,
    LabDep,
    SignedRoute,
    check_institution_access,
    lab_institution,
    nonce_refusal,
    purge_if_due,
    remember_nonce,
)
from service.api.deps import SessionDep, StateDep
from service.api.fastpath import plain_signed_json, verify_in_memory
from service.api.idempotency import Idempotency, IdempotencyDep
from service.clock import utc_now
from service.domain import records as domain
from service.domain.accounts import audit_scope, region_prefix
from service.domain.nonconforming import list_ledger
from service.domain.notify import list_notifications
from service.domain.overdue import find_overdue
from service.domain.records import (
    COLLECTIONS,
    CommissionIn,
    ContractIn,
    MediaIn,
    ProjectIn,
    ReceiptIn,
    SampleIn,
    SealIn,
    StoredFile,
    TestPlanIn,
    TestRecordIn,
    WitnessIn,
    WitnessKeyIn,
)
from service.domain.uploads import check_media_type
from service.errors import (
    BadRequest,
    Invalid,
    JianzhengError,
    NotFound,
    TooLarge,
    UnsupportedMediaType,
)
from service.state import ServiceState
from service.storage import nonces
from service.storage.blobs import CHUNK

log = logging.getLogger(__name__)

#: Most rows one list call answers.
MAX_LIST = 500
#: Largest `meta` part of a multipart record (the file part is limited by the body limit).
MAX_META_BYTES = 256 * 1024


signed = APIRouter(route_class=SignedRoute, tags=["records"])


class RecordOut(BaseModel):
    record_id: str
    leaf_hash: str = Field(description="SHA-256(0x00 || canonical record), hex")
    type: str
    created_at: str
    flags: list[dict[str, Any]] | None = Field(
        default=None, description="rules this record broke on arrival (late upload, ...)"
    )
    seal_check: dict[str, Any] | None = Field(
        default=None, description="receipts: the result of re-verifying the seal"
    )


def _create(
    session: Session,
    state: ServiceState,
    idem: Idempotency,
    collection: str,
    institution: str,
    payload: domain.RecordIn,
    file: StoredFile | None = None,
) -> Response:
    def work() -> tuple[int, Any]:
        record = domain.create_record(
            session,
            state.settings,
            state.blobs,
            collection=collection,
            institution=institution,
            payload=payload,
            file=file,
        )
        session.flush()
        return 201, domain.record_summary(record)

    return idem.run(session, work)


_CREATED: dict[int | str, dict[str, Any]] = {
    201: {"model": RecordOut, "description": "the evidence record was written"}
}


class _RecordRoute(SignedRoute):
    """`POST /api/v1/{collection}` (JSON) with a fast path for the common request.

    A signed JSON body without `Idempotency-Key` or query, from a lab key this process
    already knows (service.api.fastpath), is checked (signature in memory), validated
    against the collection's model, and written in one worker-thread hop and one commit:
    the nonce first, then the record as the general route writes it, with the same
    answer (`_create_signed`). No FastAPI dependency solving, no thread hop per
    dependency. A body the model refuses
    (422), like every other request, takes the general route, which answers as before.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        general = super().get_route_handler()
        collection = self.path_format.rsplit("/", 1)[1]
        model = COLLECTIONS[collection][1]

        async def handler(request: Request) -> Response:
            fast = await _fast_create(request, collection, model)
            return fast if fast is not None else await general(request)

        return handler


async def _fast_create(
    request: Request, collection: str, model: type[domain.RecordIn]
) -> Response | None:
    signed = await plain_signed_json(request)
    if signed is None:
        return None
    state: ServiceState = request.app.state.jz
    now = state.clock.time()
    nonce = verify_in_memory(state, request, signed, now)
    try:
        # as FastAPI reads a JSON body (json.loads), then the model (validate_python)
        payload = model.model_validate(json.loads(signed.body))
    except ValueError:  # not JSON, or invalid: the general route answers (422 ...)
        return None
    return await run_in_threadpool(
        _create_signed, state, signed.key.key_id, nonce, now, collection, signed.institution,
        payload,
    )


def _create_signed(
    state: ServiceState,
    key_id: str,
    nonce: str,
    now: float,
    collection: str,
    institution: str,
    payload: domain.RecordIn,
) -> Response:
    """The nonce, then the record, in one transaction and one commit.

    The nonce is inserted first (a replay is refused 401 before anything else, and a
    concurrent one waits on the primary key, then is refused): committed with the record,
    or, if the work fails, burnt in its own statement after the rollback, so a refused
    request cannot be replayed either (what `authenticate` guarantees by storing it first).
    """
    with state.sessions() as session:
        if not nonces.store_nonce(session.connection(), key_id, nonce, int(now)):
            raise nonce_refusal(state, session.connection(), key_id)
        try:
            answer = _create(session, state, NO_IDEMPOTENCY, collection, institution, payload)
        except BaseException:
            session.rollback()
            try:
                remember_nonce(state, key_id, nonce, now)
            except JianzhengError:  # replayed or revoked meanwhile: the first answer stands
                pass
            raise
    purge_if_due(state, now)
    return answer


#: The idempotency of a request without `Idempotency-Key`: run, commit, answer (shaped by
#: the collections' response model, as the general route's answer is).
NO_IDEMPOTENCY = Idempotency(key=None, scope="", request_hash="", model=RecordOut)


def _json_route(collection: str, summary: str) -> Callable[[Any], Any]:
    record_type, model = COLLECTIONS[collection]

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        signed.add_api_route(
            f"/api/v1/{collection}",
            endpoint,
            methods=["POST"],
            status_code=201,
            response_model=RecordOut,
            summary=summary,
            description=model.__doc__ or "",
            responses=_CREATED,
            route_class_override=_RecordRoute,
        )
        return endpoint

    return register


@_json_route("projects", "Register a project (工程项目)")
def create_project(
    body: ProjectIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "projects", lab_institution(caller), body)


@_json_route("commissions", "Register a commission (委托单)")
def create_commission(
    body: CommissionIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "commissions", lab_institution(caller), body)


@_json_route("samples", "Register a sample (样品) by its unique code")
def create_sample(
    body: SampleIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "samples", lab_institution(caller), body)


@_json_route("seals", "Record an electronic seal (电子封志) signed by the witness")
def create_seal(
    body: SealIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "seals", lab_institution(caller), body)


@_json_route("witnesses", "Record a witness record (见证记录)")
def create_witness(
    body: WitnessIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "witnesses", lab_institution(caller), body)


@_json_route("receipts", "Record a sample receipt and seal check (收样/验封)")
def create_receipt(
    body: ReceiptIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "receipts", lab_institution(caller), body)


@_json_route("test-records", "Record test data (检测数据)")
def create_test_record(
    body: TestRecordIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "test-records", lab_institution(caller), body)


@_json_route("test-plans", "Register a test plan (检测方案) for on-site or pile testing")
def create_test_plan(
    body: TestPlanIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    return _create(session, state, idem, "test-plans", lab_institution(caller), body)


def _multipart_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["meta"],
                        "properties": {
                            "meta": {
                                "type": "string",
                                "description": f"JSON: {model.__name__}",
                                "contentMediaType": "application/json",
                            },
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                },
                "application/json": {"schema": model.model_json_schema()},
            },
        }
    }


async def _read_multipart(
    request: Request, model: type[domain.RecordIn], state: ServiceState
) -> tuple[domain.RecordIn, StoredFile | None]:
    """Parse `meta` (+ optional `file`) or a plain JSON body; the file goes to the blobs."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return _validate(model, await request.body(), ("body",)), None
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            "unsupported_media_type", "send multipart/form-data (meta + file) or JSON"
        )
    try:
        form = await request.form(max_files=1, max_fields=1, max_part_size=MAX_META_BYTES)
    except Exception as exc:  # python-multipart / starlette parse errors
        raise BadRequest("malformed_multipart", f"cannot parse the form: {exc}") from exc
    try:
        unknown = sorted(set(form.keys()) - {"meta", "file"})
        if unknown:
            raise Invalid("unknown_field", f"unknown form part {unknown[0]!r}")
        meta = form.get("meta")
        if isinstance(meta, UploadFile):
            meta_bytes = await meta.read(MAX_META_BYTES + 1)
        elif isinstance(meta, str):
            meta_bytes = meta.encode("utf-8")
        else:
            raise Invalid("validation_error", "the `meta` part is required")
        payload = _validate(model, meta_bytes, ("body", "meta"))
        part = form.get("file")
        if part is None:
            return payload, None
        if not isinstance(part, UploadFile):
            raise Invalid("validation_error", "`file` must be a file part")
        media_type = check_media_type(part.content_type or "application/octet-stream")
        stored = await run_in_threadpool(_store, state, part, media_type)
        return payload, stored
    finally:
        await form.close()


def _store(state: ServiceState, part: UploadFile, media_type: str) -> StoredFile:
    part.file.seek(0)

    def chunks() -> Iterator[bytes]:
        while data := part.file.read(CHUNK):
            yield data

    return domain.store_file(state.blobs, chunks(), media_type)


def _validate(
    model: type[domain.RecordIn], data: bytes, loc: tuple[str, ...]
) -> domain.RecordIn:
    if len(data) > MAX_META_BYTES and loc != ("body",):
        raise TooLarge("body_too_large", "the meta part is too large")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = [{**e, "loc": (*loc, *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc


@signed.post(
    "/api/v1/contracts",
    status_code=201,
    response_model=RecordOut,
    summary="Register a contract (检测合同) with its PDF",
    description=ContractIn.__doc__ or "",
    responses=_CREATED,
    openapi_extra=_multipart_schema(ContractIn),
)
async def create_contract(
    request: Request, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    payload, file = await _read_multipart(request, ContractIn, state)
    return await run_in_threadpool(
        _create, session, state, idem, "contracts", lab_institution(caller), payload, file
    )


@signed.post(
    "/api/v1/media",
    status_code=201,
    response_model=RecordOut,
    summary="Register media (key images, video, data files)",
    description=MediaIn.__doc__ or "",
    responses=_CREATED,
    openapi_extra=_multipart_schema(MediaIn),
)
async def create_media(
    request: Request, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    payload, file = await _read_multipart(request, MediaIn, state)
    return await run_in_threadpool(
        _create, session, state, idem, "media", lab_institution(caller), payload, file
    )


class RecordView(BaseModel):
    record: dict[str, Any] = Field(description="the evidence record (INTERFACE §1)")
    leaf_hash: str
    flags: list[dict[str, Any]]


@signed.get(
    "/api/v1/records/{record_id}",
    response_model=RecordView,
    summary="One evidence record (own institution; auditors: any)",
)
def get_record(record_id: str, caller: CallerDep, session: SessionDep) -> Any:
    record = domain.find_record(session, record_id)
    if record is None:
        raise NotFound("record_not_found", f"no record {record_id}")
    check_institution_access(session, caller, record.institution)
    return domain.record_view(session, record)


class WitnessKeyOut(BaseModel):
    key_id: str
    algorithm: str
    public_key: str = Field(description="base64 DER SubjectPublicKeyInfo")
    fingerprint: str = Field(description="SHA-256 of the DER key, hex")
    witness: dict[str, Any] = Field(description="name, masked ID number, unit")
    created_at: str
    revoked: bool
    role: str = Field(default="witness", description="witness 见证人员 / sampler 取样人员")
    verified: bool = Field(default=False, description="a supervision agency verified the key")
    verified_at: str | None = None
    registry_record_id: str | None = Field(
        default=None, description="the agency's `registry` record of the verification"
    )
    certificate: str | None = Field(
        default=None, description="base64 DER X.509 certificate the platform CA issued"
    )


@signed.post(
    "/api/v1/witness-keys",
    status_code=201,
    response_model=WitnessKeyOut,
    tags=["witness keys"],
    summary="Register a witness's public key (Ed25519 or ECDSA P-256)",
    description="The key then signs seals and witness records of this institution. "
    "The ID number is checked (422 `id_number_invalid`) and masked in answers.",
)
def create_witness_key(
    body: WitnessKeyIn, caller: LabDep, session: SessionDep, idem: IdempotencyDep
) -> Response:
    institution = lab_institution(caller)

    def work() -> tuple[int, Any]:
        key = domain.register_witness_key(session, institution, body)
        return 201, domain.witness_key_json(key)

    return idem.run(session, work)


@signed.get(
    "/api/v1/witness-keys/{key_id}",
    response_model=WitnessKeyOut,
    tags=["witness keys"],
    summary="A registered witness key",
)
def get_witness_key(key_id: str, caller: LabDep, session: SessionDep) -> Any:
    return domain.witness_key_json(
        domain.own_witness_key(session, key_id, lab_institution(caller))
    )


@signed.post(
    "/api/v1/witness-keys/{key_id}/revocation",
    response_model=WitnessKeyOut,
    tags=["witness keys"],
    summary="Revoke a witness key (it signs nothing new; old seals stay verifiable)",
)
def revoke_witness_key(
    key_id: str, caller: LabDep, session: SessionDep, idem: IdempotencyDep
) -> Response:
    institution = lab_institution(caller)
    return idem.run(
        session,
        lambda: (
            200,
            domain.witness_key_json(domain.revoke_witness_key(session, key_id, institution)),
        ),
    )


class FlagOut(BaseModel):
    id: int
    record_id: str
    record_type: str
    institution: str
    rule: str = Field(
        description="contract_late | test_data_late | media_edited | media_time_mismatch "
        "| media_late"
    )
    detail: dict[str, Any]
    flagged_at: str


class LedgerOut(BaseModel):
    id: int
    institution: str
    code: str
    report_record_id: str
    details: dict[str, Any]
    recorded_at: str
    notification: dict[str, Any] | None = Field(
        description="delivery to the supervision agency: status, attempts, last_error"
    )


_Limit = Query(default=100, ge=1, le=MAX_LIST)
_After = Query(default=0, ge=0, le=2**63 - 1, description="page after this id")


@signed.get(
    "/api/v1/flags",
    response_model=list[FlagOut],
    tags=["rules"],
    summary="Late-upload flags of the caller's records",
)
def lab_flags(
    caller: LabDep,
    session: SessionDep,
    rule: str | None = None,
    limit: int = _Limit,
    after: int = _After,
) -> Any:
    return domain.list_flags(
        session, institution=lab_institution(caller), rule=rule, limit=limit, after_id=after
    )


@signed.get(
    "/api/v1/audit/flags",
    response_model=list[FlagOut],
    tags=["audit"],
    summary="Late-upload flags (R11, R13), all institutions or one",
)
def audit_flags(
    caller: AuditorDep,
    session: SessionDep,
    institution: str | None = None,
    rule: str | None = None,
    limit: int = _Limit,
    after: int = _After,
) -> Any:
    institutions = _audit_filter(session, caller, institution)
    return domain.list_flags(
        session,
        institution=institution,
        institutions=institutions,
        rule=rule,
        limit=limit,
        after_id=after,
    )


class OverdueOut(BaseModel):
    kind: str = Field(description="receipt (never received) | test_data (no test record)")
    institution: str
    sample_record_id: str
    sample_code: str
    receipt_record_id: str | None = None
    since: str = Field(description="when the sample was registered / received (UTC)")
    days_waiting: float


_OVERDUE_DOC = (
    "Samples whose data never arrived (R13): registered more than `rules.receipt_due_days` "
    "(7) days ago and never received (`receipt`), or received and accepted more than "
    "`rules.test_data_due_days` (30) days ago with no test record (`test_data`). Oldest "
    "first; at most `limit` of each kind."
)


@signed.get(
    "/api/v1/overdue",
    response_model=list[OverdueOut],
    tags=["rules"],
    summary="The caller's samples whose receipt or test data never arrived",
    description=_OVERDUE_DOC,
)
def lab_overdue(
    caller: LabDep, session: SessionDep, state: StateDep, limit: int = _Limit
) -> Any:
    return find_overdue(
        session,
        state.settings.rules,
        institution=lab_institution(caller),
        now=utc_now(state.clock),
        limit=limit,
    )


@signed.get(
    "/api/v1/audit/overdue",
    response_model=list[OverdueOut],
    tags=["audit"],
    summary="Samples whose receipt or test data never arrived, all institutions or one",
    description=_OVERDUE_DOC,
)
def audit_overdue(
    caller: AuditorDep,
    session: SessionDep,
    state: StateDep,
    institution: str | None = None,
    limit: int = _Limit,
) -> Any:
    return find_overdue(
        session,
        state.settings.rules,
        institution=institution,
        institutions=_audit_filter(session, caller, institution),
        now=utc_now(state.clock),
        limit=limit,
    )


def _audit_filter(session: Session, caller: Caller, institution: str | None) -> list[str] | None:
    """The institutions an audit list may show: the one asked for if the auditor's region
    covers it (403 otherwise), else those of its region; None for every institution."""
    if institution is not None:
        check_institution_access(session, caller, institution)
        return None
    return audit_scope(session, caller.auditor_id).institutions(session)


@signed.get(
    "/api/v1/nonconforming",
    response_model=list[LedgerOut],
    tags=["rules"],
    summary="The caller's nonconforming-results ledger (不合格台账)",
)
def lab_ledger(
    caller: LabDep, session: SessionDep, limit: int = _Limit, after: int = _After
) -> Any:
    return list_ledger(session, institution=lab_institution(caller), limit=limit, after_id=after)


@signed.get(
    "/api/v1/audit/nonconforming",
    response_model=list[LedgerOut],
    tags=["audit"],
    summary="Nonconforming-results ledger with notification delivery state (R12)",
)
def audit_ledger(
    caller: AuditorDep,
    session: SessionDep,
    institution: str | None = None,
    limit: int = _Limit,
    after: int = _After,
) -> Any:
    return list_ledger(
        session,
        institution=institution,
        institutions=_audit_filter(session, caller, institution),
        limit=limit,
        after_id=after,
    )


class NotificationOut(BaseModel):
    id: str = Field(description="the notification id (`X-JZ-Notification-Id` of its delivery)")
    event: str = Field(
        description="`nonconforming_result`, `seal_check_failed` or `registry_warning`"
    )
    institution: str
    agency_region: str | None = Field(
        description="the region of the supervision agency it is for (the project's, else "
        "the lab's)"
    )
    status: str = Field(description="`pending`, `delivered` or `failed` (webhook delivery)")
    attempts: int
    last_error: str | None
    created_at: str
    delivered_at: str | None
    payload: dict[str, Any] = Field(description="the JSON the webhook receives")


@signed.get(
    "/api/v1/audit/notifications",
    response_model=list[NotificationOut],
    tags=["audit"],
    summary="The supervision agencies' notifications (R12, docs/registry.md), oldest first",
    description="Auditors and agencies: those for the agencies of the caller's region "
    "(`agency_region`, the project's region, else the lab's), every one for an auditor "
    "without a region. The same events the notification webhook receives: failed results, "
    "failed seal checks and the registry's warnings.",
)
def audit_notifications(
    caller: AuditorDep,
    session: SessionDep,
    event: str | None = Query(default=None, max_length=40),
    after: str = Query(default="", max_length=26, description="page after this id"),
    limit: int = _Limit,
) -> Any:
    region = audit_scope(session, caller.auditor_id).region
    return list_notifications(
        session,
        region_prefix=region_prefix(region) if region is not None else None,
        kind=event,
        after=after,
        limit=limit,
    )


router = signed
