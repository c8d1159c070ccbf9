"""RFC 9457 problem+json for every error the API returns, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ProblemError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

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


def problem_response(exc: ProblemError) -> JSONResponse:
    return JSONResponse(
        exc.as_problem(), status_code=exc.status, media_type=PROBLEM_JSON, headers=exc.headers
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
    @app.exception_handler(ProblemError)
    async def _problem(_req: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc.errors())
        code = "validation_error"
        if any(e["type"] == "json_invalid" for e in errors):
            code = "malformed_json"
        elif any(e["type"] == "extra_forbidden" for e in errors):
            code = "unknown_field"
        detail = "invalid request"
        if errors:
            loc, msg = errors[0]["loc"], str(errors[0]["msg"])
            detail = f"{'.'.join(loc)}: {msg}" if loc else msg
        return problem_response(ProblemError(422, code, detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem_response(
            ProblemError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
        )

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", req.method, req.url.path)
        return problem_response(
            ProblemError(500, "internal_error", "the service failed to answer; it has been logged")
        )


class BodyLimitMiddleware:
    """Refuse bodies over a limit with 413 before reading them whole.

    Checks Content-Length up front and counts streamed bytes for chunked bodies.
    Routes that take large uploads register their own, larger limit by path prefix.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # "METHOD /prefix" or "/prefix" -> limit; the longest matching prefix wins.
        rules = []
        for key, limit in (overrides or {}).items():
            meth, _, prefix = key.partition(" ") if " " in key else ("*", "", key)
            rules.append((prefix, meth, limit))
        self._rules = sorted(rules, key=lambda r: -len(r[0]))

    def _limit_for(self, path: str, method: str) -> int:
        for prefix, meth, limit in self._rules:
            if path.startswith(prefix) and (meth == "*" or meth == method):
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
        exc = ProblemError(413, "body_too_large", f"request body exceeds {limit} bytes")
        resp = problem_response(exc)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(k.encode(), v.encode()) for k, v in resp.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": resp.body})


class _BodyTooLarge(Exception):
    pass
