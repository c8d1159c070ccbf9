"""What the signed write fast paths share (report codes, JSON record POSTs; issue 17).

A fast path takes the common request, a signed JSON body from a lab key this process
already knows, without FastAPI's dependency solving and body validation and in one worker
thread hop at most; every other request goes to the route's general handler, which
answers exactly as before. A fast path declines (returns None) only before it has
stored anything, so the general handler can still take the request whole.

    signed = await plain_signed_json(request)      # None: not ours, use the general route
    nonce = verify_in_memory(state, request, signed, now)   # 401 as the general route would

`verify_in_memory` runs every check of §5.1 but the nonce store (service.api.auth
`check_signature`); the fast path then stores the nonce itself before acting on the
request, in its own committed transaction or in the statement that does the work.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from service.api.auth import cached_key, check_signature, raw_query, request_path
from service.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from service.client import HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from service.client import body_hash as hash_body
from service.domain.accounts import ROLE_LAB, KeyInfo
from service.state import ServiceState

JSON = "application/json"


@dataclass(frozen=True)
class SignedJson:
    """A request a fast path may take: its cached lab key, the lab, and the raw body."""

    key: KeyInfo
    institution: str
    body: bytes


async def plain_signed_json(request: Request) -> SignedJson | None:
    """The request's key and body if it is signed JSON (`application/json`) without a
    query or an `Idempotency-Key`, from a lab key this process already loaded; else None.

    Reads the body only for such a request (a cached key's headers passed nothing yet:
    the signature is checked by `verify_in_memory`)."""
    if request.scope.get("query_string"):
        return None  # the general route checks queries (auth.check_query)
    headers = request.headers
    content_type = headers.get("content-type", "")
    if IDEMPOTENCY_HEADER in headers or content_type.split(";", 1)[0].strip().lower() != JSON:
        return None
    key = cached_key(request.app.state.jz, headers.get(HEADER_KEY) or "")
    if key is None or key.role != ROLE_LAB or not key.institution:
        return None
    return SignedJson(key, key.institution, await request.body())


def verify_in_memory(
    state: ServiceState, request: Request, signed: SignedJson, now: float
) -> str:
    """Every check of §5.1 but the nonce store, in memory; returns the nonce to store.
    Raises the general route's 401 (`auth_*`) for a request that fails one."""
    headers = request.headers
    nonce = headers.get(HEADER_NONCE)
    check_signature(
        state,
        method=request.method,
        path=request_path(request),
        query=raw_query(request),
        body_hash=hash_body(signed.body, signed.key.algorithm),
        key_id=signed.key.key_id,
        timestamp=headers.get(HEADER_TIMESTAMP),
        nonce=nonce,
        signature=headers.get(HEADER_SIGNATURE),
        now=now,
    )
    assert nonce is not None  # check_signature refused a missing nonce
    return nonce
