"""RFC 9457 problem+json for every error the API returns, mapped in one place."""

from __future__ import annotations

import logging
import math
import re
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import IntegrityFault, Invalid, JianzhengError, TooLarge, Unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

#: The one table from stable problem codes (INTERFACE §5) to HTTP statuses. Domain code
#: raises `service.errors` subclasses with these codes and never names a status;
#: tests/test_problems.py checks that every code raised anywhere is listed here with a
#: status that fits its error kind.
STATUS_BY_CODE: dict[str, int] = {
    # 400: the request cannot be read as sent
    "bad_request": 400,
    "bad_workers": 400,
    "chain_configured": 400,
    "content_length_invalid": 400,
    "malformed_multipart": 400,
    "query_ambiguous": 400,
    "upload_offset_invalid": 400,
    "upload_offset_missing": 400,
    # 401: INTERFACE §5.1
    "auth_bad_signature": 401,
    "auth_expired": 401,
    "auth_missing": 401,
    "auth_replayed": 401,
    "auth_unknown_key": 401,
    "unauthorized": 401,
    # 403
    "forbidden": 403,
    "out_of_region": 403,
    # 404
    "dev_chain_not_deployed": 404,
    "image_not_found": 404,
    "not_found": 404,
    "parent_not_found": 404,
    "pdf_not_found": 404,
    "proposal_not_found": 404,
    "record_not_found": 404,
    "registered_project_not_found": 404,
    "unknown_auditor": 404,
    "unknown_code": 404,
    "unknown_institution": 404,
    "unknown_key": 404,
    "upload_not_found": 404,
    "witness_key_not_found": 404,
    # 405 / 406 (raised by Starlette itself)
    "method_not_allowed": 405,
    "not_acceptable": 406,
    # 409: contradicts what is recorded
    "already_corrected": 409,
    "already_sealed": 409,
    "already_voided": 409,
    "conflict": 409,
    "duplicate_report_no": 409,
    "duplicate_sample_code": 409,
    "evidence_unavailable": 409,
    "idempotency_in_progress": 409,
    "institution_exists": 409,
    "key_revoked": 409,
    "proposal_decided": 409,
    "test_record_exists": 409,
    "report_closed": 409,
    "report_metadata_missing": 409,
    "report_revoked": 409,
    "report_sealed": 409,
    "report_voided": 409,
    "upload_already_used": 409,
    "upload_closed": 409,
    "upload_incomplete": 409,
    "upload_lost": 409,
    "upload_not_complete": 409,
    "upload_offset_mismatch": 409,
    "witness_key_exists": 409,
    "witness_key_verified": 409,
    # 410
    "upload_expired": 410,
    # 413
    "body_too_large": 413,
    "pdf_too_large": 413,
    # 415
    "unsupported_media_type": 415,
    # 422: well formed, but breaks a rule
    "backup_inside_data_dir": 422,
    "backup_unsupported": 422,
    "approver_out_of_scope": 422,
    "out_of_scope": 422,
    "qualification_dates_invalid": 422,
    "qualification_expired": 422,
    "approver_unregistered": 422,
    "bundle_too_large": 422,
    "calibration_dates_invalid": 422,
    "correction_sample_mismatch": 422,
    "date_in_future": 422,
    "duplicate_parent": 422,
    "file_empty": 422,
    "file_required": 422,
    "file_twice": 422,
    "file_type_invalid": 422,
    "history_not_allowed": 422,
    "id_number_invalid": 422,
    "idempotency_mismatch": 422,
    "image_not_in_parents": 422,
    "image_required": 422,
    "project_fields_invalid": 422,
    "replacement_incomplete": 422,
    "signing_scope_invalid": 422,
    "image_unreadable": 422,
    "invalid_algorithm": 422,
    "invalid_expiry": 422,
    "invalid_filter": 422,
    "invalid_login": 422,
    "invalid_password": 422,
    "login_taken": 422,
    "invalid_idempotency_key": 422,
    "invalid_name": 422,
    "invalid_parent": 422,
    "invalid_reason": 422,
    "invalid_region": 422,
    "invalid_report_no": 422,
    "invalid_superseded_by": 422,
    "invalid_uscc": 422,
    "invalid_year": 422,
    "malformed_json": 422,
    "media_type_invalid": 422,
    "not_canonicalizable": 422,
    "parent_count_invalid": 422,
    "parent_duplicate": 422,
    "parent_required": 422,
    "parent_type_invalid": 422,
    "pdf_damaged": 422,
    "pdf_empty": 422,
    "pdf_encrypted": 422,
    "pdf_invalid": 422,
    "pdf_too_complex": 422,
    "project_mismatch": 422,
    "sample_code_mismatch": 422,
    "seal_signature_invalid": 422,
    "sha256_invalid": 422,
    "test_record_corrected": 422,
    "test_record_required": 422,
    "timestamp_in_future": 422,
    "too_many_parents": 422,
    "unknown_field": 422,
    "unknown_parent": 422,
    "upload_hash_mismatch": 422,
    "upload_length_exceeded": 422,
    "upload_length_invalid": 422,
    "validation_error": 422,
    "witness_key_invalid": 422,
    "witness_key_revoked": 422,
    "witness_signature_invalid": 422,
    # 429
    "rate_limited": 429,
    # 500: stored data or configuration broken
    "bad_deployment_file": 500,
    "chain_not_configured": 500,
    "file_corrupt": 500,
    "file_missing": 500,
    "internal_error": 500,
    "log_hash_mismatch": 500,
    "log_hash_unknown": 500,
    "record_corrupt": 500,
    "record_missing": 500,
    "unsafe_settings": 500,
    # 503: a dependency is away
    "ca_error": 503,
    "chain_unreachable": 503,
    "database_unavailable": 503,
    "dev_chain_not_running": 503,
    "key_unavailable": 503,
    "pg_dump_failed": 503,
    "pg_dump_missing": 503,
    "sealing_failed": 503,
    "signer_error": 503,
    "timestamp_unavailable": 503,
    "verify_busy": 503,
}

#: The status of an error kind (service.errors), used only for a code missing from the
#: table above (logged: a test keeps the table complete).
STATUS_BY_KIND: dict[str, int] = {
    "bad_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "gone": 410,
    "too_large": 413,
    "unsupported_media_type": 415,
    "invalid": 422,
    "rate_limited": 429,
    "integrity": 500,
    "error": 500,
    "unavailable": 503,
}

#: Stable codes for the errors Starlette raises itself.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}

#: Problem-body facts that an HTTP header repeats.
_HEADER_FACTS = {"offset": "Upload-Offset"}


#: Exceptions that mean the database cannot be reached or is busy right now (a restart, a
#: failover, a lost connection, an exhausted pool, SQLite's write lock past its timeout):
#: answered 503 with Retry-After, never 500. Integrity errors are not among them.
DATABASE_FAULTS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
DATABASE_RETRY_AFTER_S = 2.0
DATABASE_UNAVAILABLE = Unavailable(
    "database_unavailable",
    "the database is unavailable right now; nothing was recorded, try again shortly",
    retry_after_s=DATABASE_RETRY_AFTER_S,
)


def status_of(exc: JianzhengError) -> int:
    status = STATUS_BY_CODE.get(exc.code)
    if status is None:
        log.error("problem code %r is missing from STATUS_BY_CODE", exc.code)
        status = STATUS_BY_KIND.get(exc.kind, 500)
    return status


def problem_body(exc: JianzhengError, status: int) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": exc.code,
        "detail": exc.detail,
        **exc.extra,
    }


def problem_headers(exc: JianzhengError, status: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "JZ1-HMAC-SHA256"
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    for fact, header in _HEADER_FACTS.items():
        if fact in exc.extra:
            headers[header] = str(exc.extra[fact])
    return headers


def problem_response(
    exc: JianzhengError, *, status: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    status = status_of(exc) if status is None else status
    return JSONResponse(
        problem_body(exc, status),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers={**problem_headers(exc, status), **(headers or {})},
    )


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(JianzhengError)
    async def _problem(_req: Request, exc: JianzhengError) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc.errors())
        code = "validation_error"
        if any(e["type"] == "json_invalid" for e in errors):
            code = "malformed_json"
        elif any(e["type"] == "history_not_allowed" for e in errors):
            code = "history_not_allowed"
        elif any(e["type"] == "extra_forbidden" for e in errors):
            code = "unknown_field"
        detail = "invalid request"
        if errors:
            loc, msg = errors[0]["loc"], str(errors[0]["msg"])
            detail = f"{'.'.join(loc)}: {msg}" if loc else msg
        return problem_response(Invalid(code, detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem_response(
            JianzhengError(code, str(exc.detail)),
            status=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def _database_away(req: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", req.method, req.url.path, exc)
        return problem_response(DATABASE_UNAVAILABLE)

    for fault in DATABASE_FAULTS:
        app.add_exception_handler(fault, _database_away)

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", req.method, req.url.path)
        return problem_response(
            IntegrityFault("internal_error", "the service failed to answer; it has been logged")
        )


class BodyLimitMiddleware:
    """Refuse bodies over a limit with 413 before reading them whole.

    Checks Content-Length up front and counts streamed bytes for chunked bodies. Routes
    that take large uploads get their own, larger limit: `overrides` maps
    "METHOD /path/pattern" (a regular expression matched against the whole path, or
    without a method for every method) to a limit; the first matching rule wins.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        rules = []
        for key, limit in (overrides or {}).items():
            meth, _, pattern = key.partition(" ") if " " in key else ("*", "", key)
            rules.append((re.compile(pattern), meth, limit))
        self._rules = rules

    def _limit_for(self, path: str, method: str) -> int:
        for pattern, meth, limit in self._rules:
            if (meth == "*" or meth == method) and pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"], scope["method"])
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(send, limit)
                    return
                if declared >= 0:
                    # The HTTP server delivers exactly Content-Length bytes, never more:
                    # nothing left to count (the hot path pays no wrapper per message).
                    await self.app(scope, receive, send)
                    return
        seen = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    rejected = True
                    raise _BodyTooLarge()
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, limit)

    @staticmethod
    async def _reject(send: Send, limit: int) -> None:
        exc = TooLarge("body_too_large", f"request body exceeds {limit} bytes")
        resp = problem_response(exc)
        await send(
            {
                "type": "http.response.start",
                "status": resp.status_code,
                "headers": [(k.encode(), v.encode()) for k, v in resp.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": resp.body})


class _BodyTooLarge(Exception):
    pass
