"""Resumable uploads (INTERFACE §5.2): create, PATCH chunks, HEAD offset, complete.

Every call is signed (§5.1). The PATCH route does not use `SignedRoute`, which would
hold the whole body in memory: it checks the headers and the upload first (so a stale
offset is refused before any byte is read), streams the chunk to a file while hashing
it, then verifies the signature over that hash before the chunk counts.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from service.api.auth import (
    LabDep,
    SignedRoute,
    SigningHeaders,
    check_headers,
    check_query,
    lab_institution,
    raw_query,
    request_path,
    verify_signed_request,
)
from service.api.deps import SessionDep, StateDep
from service.api.idempotency import IdempotencyDep
from service.api.routing import DocumentedRoute
from service.client import (
    DEFAULT_ALGORITHM,
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    new_body_hasher,
)
from service.clock import rfc3339
from service.domain import uploads
from service.domain.accounts import ROLE_LAB, lookup_key
from service.errors import (
    AuthFailed,
    BadRequest,
    Forbidden,
    Invalid,
    TooLarge,
    UnsupportedMediaType,
)
from service.state import ServiceState

signed = APIRouter(route_class=SignedRoute, tags=["uploads"])
streaming = APIRouter(route_class=DocumentedRoute, tags=["uploads"])

UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"


class UploadIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"length": 209715200, "media_type": "video/mp4"}]},
    )

    length: int = Field(gt=0, le=uploads.MAX_UPLOAD_LENGTH, description="total bytes")
    media_type: str = Field(min_length=3, max_length=127, description="e.g. video/mp4")


class UploadOut(BaseModel):
    upload_id: str
    length: int
    offset: int
    media_type: str
    status: str = Field(description="open | complete | used | expired")
    sha256: str | None = None
    record_id: str | None = None
    location: str
    expires_at: str | None = Field(
        default=None,
        description="while open: when the upload expires unless another chunk arrives "
        "(then 410 `upload_expired`); null once completed",
    )


class CompleteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"sha256": "ab" * 32}]}
    )

    sha256: str = Field(min_length=64, max_length=64, description="SHA-256 of the whole file")


def _location(upload_id: str) -> str:
    return f"/api/v1/uploads/{upload_id}"


def _expire_after(state: ServiceState) -> timedelta:
    return timedelta(hours=state.settings.uploads.expire_after_h)


def _out(u: Any, state: ServiceState) -> dict[str, Any]:
    expires = uploads.expires_at(u, _expire_after(state))
    return {
        "upload_id": u.id,
        "length": u.length,
        "offset": u.offset,
        "media_type": u.media_type,
        "status": u.status,
        "sha256": u.sha256,
        "record_id": u.record_id,
        "location": _location(u.id),
        "expires_at": rfc3339(expires) if expires is not None else None,
    }


@signed.post(
    "/api/v1/uploads",
    status_code=201,
    response_model=UploadOut,
    summary="Start a resumable upload",
    description="Declares the length and media type; answers the upload id and its "
    "`Location`. Then PATCH chunks at `Upload-Offset` and finish with `/complete`.",
)
def create_upload(
    body: UploadIn, caller: LabDep, session: SessionDep, state: StateDep, idem: IdempotencyDep
) -> Response:
    institution = lab_institution(caller)

    def work() -> tuple[int, Any]:
        upload = uploads.create_upload(
            session,
            state.settings.data_dir,
            institution=institution,
            length=body.length,
            media_type=body.media_type,
            clock=state.clock,
        )
        session.flush()
        return 201, _out(upload, state)

    resp = idem.run(session, work)
    resp.headers["Location"] = json.loads(bytes(resp.body))["location"]
    return resp


@signed.head(
    "/api/v1/uploads/{upload_id}",
    summary="Current offset of an upload",
    responses={200: {"headers": {UPLOAD_OFFSET: {"schema": {"type": "integer"}}}}},
)
def head_upload(upload_id: str, caller: LabDep, session: SessionDep) -> Response:
    upload = uploads.get_upload(session, upload_id, lab_institution(caller))
    if upload.status == uploads.STATUS_EXPIRED:
        uploads.check_open(upload)  # 410: there is nothing left to resume
    return Response(
        status_code=200,
        headers={
            UPLOAD_OFFSET: str(upload.offset),
            UPLOAD_LENGTH: str(upload.length),
            "Cache-Control": "no-store",
        },
    )


@signed.get("/api/v1/uploads/{upload_id}", response_model=UploadOut, summary="Upload status")
def get_upload(upload_id: str, caller: LabDep, session: SessionDep, state: StateDep) -> Any:
    return _out(uploads.get_upload(session, upload_id, lab_institution(caller)), state)


@signed.post(
    "/api/v1/uploads/{upload_id}/complete",
    response_model=UploadOut,
    summary="Finish an upload by its SHA-256",
    description="All bytes must be in (409 `upload_incomplete`); a SHA-256 that does not "
    "match is refused with 422 `upload_hash_mismatch` and nothing is recorded. The "
    "completed upload is then the `upload_id` of one media or contract record.",
)
def complete_upload(
    upload_id: str,
    body: CompleteIn,
    caller: LabDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    institution = lab_institution(caller)

    def work() -> tuple[int, Any]:
        upload = uploads.get_upload(session, upload_id, institution)
        upload = uploads.complete_upload(
            session, state.settings.data_dir, state.blobs, upload, body.sha256, clock=state.clock
        )
        return 200, _out(upload, state)

    return idem.run(session, work)


def _int_header(value: str | None, name: str, code: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise BadRequest(code, f"{name} must be a non-negative integer")
    return int(value)


def _precheck(
    state: ServiceState, key_id: str, upload_id: str, offset: int, declared: int | None
) -> int:
    """Before reading the body (signed headers already checked): the key is still an
    active lab key and the chunk can be appended. The signature itself is checked once
    the body has been hashed; an error here spares an honest client from sending a chunk
    that would be refused anyway."""
    with state.sessions() as session:
        key = lookup_key(session, state.settings, key_id)
        if key is None or key.revoked:
            raise AuthFailed("auth_unknown_key", "unknown or revoked API key")
        if key.role != ROLE_LAB or not key.institution:
            raise Forbidden("forbidden", "this endpoint is for lab keys")
        upload = uploads.get_upload(session, upload_id, key.institution)
        uploads.check_can_append(upload, offset, declared)
        return upload.length - offset


def _commit(
    state: ServiceState, upload_id: str, institution: str, offset: int, chunk: uploads.ReceivedChunk
) -> int:
    with state.sessions() as session:
        uploads.check_open(uploads.get_upload(session, upload_id, institution))
        data_dir = state.settings.data_dir
        new_offset = uploads.commit_chunk(
            session, data_dir, upload_id, offset, chunk, clock=state.clock
        )
        session.commit()
        return new_offset


@streaming.patch(
    "/api/v1/uploads/{upload_id}",
    status_code=204,
    summary="Append one chunk at Upload-Offset",
    description="Body: the chunk bytes (`application/offset+octet-stream`), at most "
    f"{uploads.MAX_CHUNK_BYTES} bytes. `Upload-Offset` must equal the current offset "
    "(409 `upload_offset_mismatch` otherwise, with the current offset in the "
    "`Upload-Offset` header). A chunk counts only when it arrived whole: after a dropped "
    "connection, HEAD tells where to resume. Signed like every call (§5.1).",
    responses={204: {"headers": {UPLOAD_OFFSET: {"schema": {"type": "integer"}}}}},
    dependencies=[SigningHeaders],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/offset+octet-stream": {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        }
    },
)
async def patch_upload(
    upload_id: str,
    request: Request,
    upload_offset: Annotated[str | None, Header(alias=UPLOAD_OFFSET)] = None,
) -> Response:
    state: ServiceState = request.app.state.jz
    headers = request.headers
    # §5.1 first: an unsigned, stale or unknown-key request is refused 401 before anything
    # else is looked at; the signature over the body is checked once the body is hashed.
    key = await run_in_threadpool(
        partial(
            check_headers,
            state,
            key_id=headers.get(HEADER_KEY),
            timestamp=headers.get(HEADER_TIMESTAMP),
            nonce=headers.get(HEADER_NONCE),
            signature=headers.get(HEADER_SIGNATURE),
            now=state.clock.time(),
        )
    )
    check_query(raw_query(request))
    offset = _int_header(upload_offset, UPLOAD_OFFSET, "upload_offset_invalid")
    if offset is None:
        raise BadRequest("upload_offset_missing", f"{UPLOAD_OFFSET} header is required")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in uploads.CHUNK_CONTENT_TYPES:
        raise UnsupportedMediaType(
            "unsupported_media_type",
            "send the chunk as application/offset+octet-stream",
        )
    declared = _int_header(
        request.headers.get("content-length"), "Content-Length", "content_length_invalid"
    )
    room = await run_in_threadpool(_precheck, state, key.key_id, upload_id, offset, declared)

    chunk_path = uploads.new_chunk_path(state.settings.data_dir, upload_id)
    try:
        h = hashlib.sha256()
        # the signature's body hash: SHA-256, or SM3 for a JZ1-HMAC-SM3 key (§7.7)
        signed = h if key.algorithm == DEFAULT_ALGORITHM else new_body_hasher(key.algorithm)
        size = 0
        try:
            with chunk_path.open("wb") as fh:
                async for data in request.stream():
                    if not data:
                        continue
                    size += len(data)
                    if size > uploads.MAX_CHUNK_BYTES:
                        raise TooLarge("body_too_large", "chunk too large")
                    if size > room:
                        raise Invalid(
                            "upload_length_exceeded", "the chunk passes the declared length"
                        )
                    h.update(data)
                    if signed is not h:
                        signed.update(data)
                    fh.write(data)
        except ClientDisconnect:
            # The client is gone: the partial chunk never counts; HEAD shows the offset.
            return Response(status_code=400)
        caller = await run_in_threadpool(
            verify_signed_request,
            state,
            method=request.method,
            path=request_path(request),
            query=raw_query(request),
            body_hash=signed.hexdigest(),
            key_id=headers.get(HEADER_KEY),
            timestamp=headers.get(HEADER_TIMESTAMP),
            nonce=headers.get(HEADER_NONCE),
            signature=headers.get(HEADER_SIGNATURE),
        )
        if caller.role != ROLE_LAB or not caller.institution:
            raise Forbidden("forbidden", "this endpoint is for lab keys")
        chunk = uploads.ReceivedChunk(chunk_path, size, h.hexdigest())
        new_offset = await run_in_threadpool(
            _commit, state, upload_id, caller.institution, offset, chunk
        )
    finally:
        uploads.discard_chunk(chunk_path)
    return Response(status_code=204, headers={UPLOAD_OFFSET: str(new_offset)})


router = APIRouter()
router.include_router(signed)
router.include_router(streaming)
