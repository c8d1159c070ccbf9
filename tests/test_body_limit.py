"""BodyLimitMiddleware: 413 before the body is read when Content-Length is too large, and
while streaming when a chunked body grows past the limit (pure ASGI; no server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from service.api.problems import BodyLimitMiddleware


async def _echo_length(scope: Any, receive: Any, send: Any) -> None:
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(total).encode()})


def _call(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Returns (status, body, how many chunks the app pulled)."""
    app = BodyLimitMiddleware(_echo_length, max_bytes=100, overrides={"POST /big": 1000})
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        body = chunks[pulled]
        pulled += 1
        return {"type": "http.request", "body": body, "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/small", "headers": headers}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, body, pulled


def test_declared_length_over_the_limit_is_refused_unread() -> None:
    status, body, pulled = _call([(b"content-length", b"101")], [b"x" * 101])
    assert status == 413 and pulled == 0
    assert json.loads(body)["code"] == "body_too_large"


def test_declared_length_within_the_limit_passes() -> None:
    status, body, _ = _call([(b"content-length", b"100")], [b"x" * 100])
    assert (status, body) == (200, b"100")


def test_chunked_body_is_counted_and_stopped_past_the_limit() -> None:
    chunks = [b"x" * 60, b"x" * 60, b"x" * 60]
    status, body, pulled = _call([(b"transfer-encoding", b"chunked")], chunks)
    assert status == 413 and pulled == 2
    assert json.loads(body)["code"] == "body_too_large"


def test_chunked_body_within_the_limit_passes() -> None:
    status, body, _ = _call([(b"transfer-encoding", b"chunked")], [b"x" * 50, b"x" * 50])
    assert (status, body) == (200, b"100")
