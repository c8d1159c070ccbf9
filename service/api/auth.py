"""Signed requests (INTERFACE.md §5.1): who is calling, checked before anything else.

Use in a router:

    router = APIRouter(route_class=SignedRoute)      # authenticate before body parsing

    @router.post("/api/v1/things")
    def create(caller: LabDep, ...): ...

`SignedRoute` reads the raw body once (Starlette caches it, so JSON and multipart
parsing still work) and verifies the signature *before* FastAPI parses or validates
the body, so an unsigned request gets 401, never 422. The dependencies (`CallerDep`,
`LabDep`, `AuditorDep`) also work on a plain `APIRoute` (they then authenticate
themselves, for JSON bodies), and add the role check (403 `forbidden`).

Order of the checks: headers present and well formed (`auth_missing`), timestamp
within the window (`auth_expired`), key known and not revoked (`auth_unknown_key`),
signature (`auth_bad_signature`), nonce not seen before for this key
(`auth_replayed`). The nonce is stored only once the signature is valid, in its own
committed transaction (an INSERT on the `auth_nonces` primary key, so two API
processes on PostgreSQL cannot both accept it). The fast paths (service/api/fastpath.py)
run the same checks through `check_signature`: the report-code one stores the nonce in
the one autocommit statement that also issues the code; the JSON record one inserts it
first in the record's transaction (one commit for both) and, if the work fails, burns it
alone after the rollback, so no request, answered or refused, can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.routing import DocumentedRoute
from service.client import (
    DEFAULT_ALGORITHM,
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    NONCE_MAX_CHARS,
    NONCE_MIN_CHARS,
    query_ambiguity,
    string_to_sign,
)
from service.client import (
    body_hash as hash_body,
)
from service.client import signature as client_signature
from service.domain.accounts import (
    ROLE_AGENCY,
    ROLE_AUDITOR,
    ROLE_LAB,
    KeyInfo,
    audit_scope,
    lookup_key,
)
from service.errors import AuthFailed, BadRequest, Forbidden, JianzhengError
from service.state import ServiceState
from service.storage import nonces

log = logging.getLogger(__name__)

NONCE_RE = re.compile(rf"^[A-Za-z0-9_-]{{{NONCE_MIN_CHARS},{NONCE_MAX_CHARS}}}$")
TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
KEY_ID_MAX_CHARS = 40
SIGNATURE_RE = re.compile(r"^[0-9a-fA-F]{64}$")

_STATE_ATTR = "jz_caller"
_BODY_HASH_ATTR = "jz_body_sha256"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller. `scope` groups keys of one owner (idempotency, isolation)."""

    key_id: str
    role: str
    institution: str | None
    auditor_id: str | None

    @property
    def scope(self) -> str:
        return self.institution or self.auditor_id or self.key_id


def _unauthorized(code: str, detail: str) -> JianzhengError:
    return AuthFailed(code, detail)


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.jz
    return state


def request_path(request: Request) -> str:
    """The request path as sent (percent-encoding intact), without the query."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).split(b"?", 1)[0].decode("latin-1")
    return str(request.scope["path"])


def raw_query(request: Request) -> bytes:
    qs = request.scope.get("query_string", b"")
    return bytes(qs) if isinstance(qs, bytes | bytearray) else str(qs).encode("latin-1")


async def authenticate(request: Request) -> Caller:
    """Verify the request's signature once; the result is cached on the request."""
    cached = getattr(request.state, _STATE_ATTR, None)
    if isinstance(cached, Caller):
        return cached
    if isinstance(cached, JianzhengError):
        raise cached
    state = _state(request)
    headers = request.headers
    try:
        # §5.1 before the body: well-formed headers, the window, a known key, an unambiguous
        # query. Only then is the body read and hashed, so a client without a key cannot
        # make the service buffer a large body.
        key_id = headers.get(HEADER_KEY)
        header_check = partial(
            check_headers,
            state,
            key_id=key_id,
            timestamp=headers.get(HEADER_TIMESTAMP),
            nonce=headers.get(HEADER_NONCE),
            signature=headers.get(HEADER_SIGNATURE),
            now=state.clock.time(),
        )
        if key_id is not None and key_id in state.keys:
            key = header_check()  # no database access for a key this process knows
        else:
            key = await run_in_threadpool(header_check)
        check_query(raw_query(request))
    except JianzhengError as exc:
        setattr(request.state, _STATE_ATTR, exc)
        raise
    try:
        body = await request.body()
    except RuntimeError:  # pragma: no cover - programming error: body consumed unsigned
        raise RuntimeError(
            "request body consumed before authentication; use APIRouter(route_class=SignedRoute)"
        ) from None
    sha256 = hashlib.sha256(body).hexdigest()
    setattr(request.state, _BODY_HASH_ATTR, sha256)  # the idempotency fingerprint's
    signed_hash = sha256 if key.algorithm == DEFAULT_ALGORITHM else hash_body(body, key.algorithm)
    try:
        caller = await run_in_threadpool(
            verify_signed_request,
            state,
            method=request.method,
            path=request_path(request),
            query=raw_query(request),
            body_hash=signed_hash,
            key_id=key_id,
            timestamp=headers.get(HEADER_TIMESTAMP),
            nonce=headers.get(HEADER_NONCE),
            signature=headers.get(HEADER_SIGNATURE),
        )
    except JianzhengError as exc:
        setattr(request.state, _STATE_ATTR, exc)
        raise
    setattr(request.state, _STATE_ATTR, caller)
    return caller


def check_query(query: bytes | str) -> None:
    """400 `query_ambiguous` for a query two different requests could share a signature of."""
    why = query_ambiguity(query)
    if why is not None:
        raise BadRequest("query_ambiguous", why)


def body_hash_of(request: Request) -> str | None:
    """SHA-256 (hex) of the raw body, once `authenticate` has read it."""
    value = getattr(request.state, _BODY_HASH_ATTR, None)
    return value if isinstance(value, str) else None


def verify_signed_request(
    state: ServiceState,
    *,
    method: str,
    path: str,
    query: bytes | str,
    body_hash: str,
    key_id: str | None,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    now: float | None = None,
) -> Caller:
    """The checks of §5.1 in order; raises JianzhengError 401 with the `auth_*` code."""
    now = state.clock.time() if now is None else now
    key = check_signature(
        state,
        method=method,
        path=path,
        query=query,
        body_hash=body_hash,
        key_id=key_id,
        timestamp=timestamp,
        nonce=nonce,
        signature=signature,
        now=now,
    )
    assert nonce is not None  # check_signature refused a missing nonce
    remember_nonce(state, key.key_id, nonce, now)
    return Caller(key.key_id, key.role, key.institution, key.auditor_id)


def check_signature(
    state: ServiceState,
    *,
    method: str,
    path: str,
    query: bytes | str,
    body_hash: str,
    key_id: str | None,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    now: float,
) -> KeyInfo:
    """Every check of §5.1 but the nonce store: headers, window, key, signature.

    Touches the database only to load a key not yet in this process's cache. The caller
    must then store the nonce (`remember_nonce`, or a statement doing the same, such as
    the report-code fast path) before acting on the request.
    """
    key = check_headers(
        state, key_id=key_id, timestamp=timestamp, nonce=nonce, signature=signature, now=now
    )
    assert timestamp and nonce and signature  # check_headers refused them missing
    # §5.1, or §7.7 for a key issued for JZ1-HMAC-SM3 (the body hash is the caller's, made
    # with the key's algorithm: `body_hash` of service.client)
    expected = client_signature(
        key.secret,
        string_to_sign(method, path, query, timestamp, nonce, body_hash, key.algorithm),
        key.algorithm,
    )
    if not hmac.compare_digest(expected, signature.lower()):
        raise _unauthorized("auth_bad_signature", "the signature does not match the request")
    return key


def check_headers(
    state: ServiceState,
    *,
    key_id: str | None,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    now: float,
) -> KeyInfo:
    """The checks of §5.1 that need no body: all four headers well-formed, the timestamp
    inside the window, the key known. A streaming endpoint runs these before it reads the
    body, so an unsigned or stale request is refused 401 before anything else."""
    missing = [
        name
        for name, value in (
            (HEADER_KEY, key_id),
            (HEADER_TIMESTAMP, timestamp),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, signature),
        )
        if not value
    ]
    if missing:
        raise _unauthorized("auth_missing", f"missing header(s): {', '.join(missing)}")
    assert key_id and timestamp and nonce and signature  # for the type checker
    if len(key_id) > KEY_ID_MAX_CHARS:
        raise _unauthorized("auth_unknown_key", "unknown API key")
    if not NONCE_RE.match(nonce):
        raise _unauthorized(
            "auth_missing",
            f"{HEADER_NONCE} must be {NONCE_MIN_CHARS}-{NONCE_MAX_CHARS} of [A-Za-z0-9_-]",
        )
    if not TIMESTAMP_RE.match(timestamp):
        raise _unauthorized("auth_missing", f"{HEADER_TIMESTAMP} must be Unix seconds")
    window = state.settings.security.replay_window_s
    if abs(int(timestamp) - now) > window:
        raise _unauthorized(
            "auth_expired", f"timestamp is more than {window} s from the server clock"
        )
    key = state.keys.get(key_id)
    if key is None:
        with state.sessions() as session:
            try:
                key = lookup_key(session, state.settings, key_id)
            except ValueError:
                # The stored secret does not open with this master key (changed, or the
                # row damaged): the key cannot sign anything; the operator must look.
                log.error("API key %s: the stored secret cannot be decrypted", key_id)
                raise _unauthorized(
                    "auth_unknown_key",
                    "this key cannot be used: its stored secret is unreadable; ask the "
                    "platform's operator",
                ) from None
        if key is None or key.revoked:
            raise _unauthorized("auth_unknown_key", "unknown or revoked API key")
        state.keys[key_id] = key  # role, owner and secret never change for a key id
    if key.expires_at is not None and now >= key.expires_at:
        raise _unauthorized("auth_unknown_key", "this API key has expired")
    if not SIGNATURE_RE.match(signature):
        raise _unauthorized("auth_bad_signature", "the signature is not 64 hex characters")
    return key


def cached_key(state: ServiceState, key_id: str) -> KeyInfo | None:
    """The key if this process already loaded it (no database access), else None."""
    return state.keys.get(key_id)


def remember_nonce(state: ServiceState, key_id: str, nonce: str, now: float) -> None:
    """Store the nonce in its own autocommit statement if the key is still active.

    Revocation takes effect at once, whatever the cache holds; a nonce seen before is
    refused (`auth_replayed`), an inactive key `auth_unknown_key`.
    """
    with nonces.autocommit(state.engine) as conn:
        if not nonces.store_nonce(conn, key_id, nonce, int(now)):
            raise nonce_refusal(state, conn, key_id)
        nonces.purge_if_due(
            state.purge, conn, int(now), state.settings.security.replay_window_s
        )


def nonce_refusal(state: ServiceState, conn: Connection, key_id: str) -> JianzhengError:
    """Why a nonce was not stored: the key is no longer active, or the nonce was replayed."""
    if not nonces.key_active(conn, key_id):
        state.keys.pop(key_id, None)
        return _unauthorized("auth_unknown_key", "unknown or revoked API key")
    return _unauthorized("auth_replayed", "this nonce was already used with this key")


def purge_if_due(state: ServiceState, now: float) -> None:
    """The purge for callers that stored the nonce themselves (no connection if not due)."""
    if not state.purge.due(now):
        return
    with nonces.autocommit(state.engine) as conn:
        nonces.purge_if_due(state.purge, conn, int(now), state.settings.security.replay_window_s)


class SignedRoute(DocumentedRoute):
    """An APIRoute that authenticates before FastAPI reads and validates the body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def signed_handler(request: Request) -> Response:
            await authenticate(request)
            return await handler(request)

        return signed_handler


# --------------------------------------------------------------------------- OpenAPI

_SEE_SIGNING = "See docs/signing.md (INTERFACE.md §5.1)."

#: The four signing headers as apiKey schemes, so the OpenAPI document declares them (the
#: operations that depend on `signing_headers` require all four together). They only declare:
#: `auto_error=False` and the values unused, since `authenticate` reads and checks the
#: headers itself, in the order of the module doc, before the body is parsed.
SIGNING_SCHEMES = (
    APIKeyHeader(
        name=HEADER_KEY,
        scheme_name="JZKey",
        auto_error=False,
        description="The key id the platform issued (`jzl_…` for labs, `jza_…` for "
        f"auditors). {_SEE_SIGNING}",
    ),
    APIKeyHeader(
        name=HEADER_TIMESTAMP,
        scheme_name="JZTimestamp",
        auto_error=False,
        description="Unix seconds, decimal; refused (401 `auth_expired`) when more than "
        f"300 s from the server clock. {_SEE_SIGNING}",
    ),
    APIKeyHeader(
        name=HEADER_NONCE,
        scheme_name="JZNonce",
        auto_error=False,
        description="16–64 characters of `[A-Za-z0-9_-]`, new for every request "
        f"(a nonce seen again is 401 `auth_replayed`). {_SEE_SIGNING}",
    ),
    APIKeyHeader(
        name=HEADER_SIGNATURE,
        scheme_name="JZSignature",
        auto_error=False,
        description="Lowercase hex HMAC-SHA256, keyed with the UTF-8 bytes of the "
        "secret, of seven lines joined by `\\n`: `JZ1-HMAC-SHA256`, the method in upper "
        "case, the path as sent (no query), the canonical query (empty line if none), the "
        "X-JZ-Timestamp value, the X-JZ-Nonce value, and the lowercase hex SHA-256 of the "
        "body bytes as sent. A key issued for `hmac-sm3` (§7.7) signs the same lines with "
        "`JZ1-HMAC-SM3` first and SM3 in place of SHA-256 for both the body hash and the "
        "HMAC. The page cannot compute it for you: sign with "
        "`service.client.JianzhengClient` or per docs/signing.md (test vectors included).",
    ),
)
_KEY, _TIMESTAMP, _NONCE, _SIGNATURE = SIGNING_SCHEMES


# --------------------------------------------------------------------------- dependencies


async def signing_headers(
    _key: Annotated[str | None, Security(_KEY)],
    _timestamp: Annotated[str | None, Security(_TIMESTAMP)],
    _nonce: Annotated[str | None, Security(_NONCE)],
    _signature: Annotated[str | None, Security(_SIGNATURE)],
) -> None:
    """Declares the four signing headers as the operation's security; checks nothing (a
    route that streams its body, `PATCH /api/v1/uploads/{id}`, checks them itself)."""


SigningHeaders = Depends(signing_headers)


async def get_caller(request: Request, _: Annotated[None, SigningHeaders]) -> Caller:
    """The signed caller (any role), authenticated once per request (`authenticate`)."""
    return await authenticate(request)


SignedCaller = Annotated[Caller, Depends(get_caller)]


async def require_lab(caller: SignedCaller) -> Caller:
    if caller.role != ROLE_LAB or not caller.institution:
        raise Forbidden("forbidden", "this endpoint is for lab keys")
    return caller


async def require_auditor(caller: SignedCaller) -> Caller:
    """Auditor keys, and supervision-agency keys (an agency reads its region as auditors do)."""
    if caller.role not in (ROLE_AUDITOR, ROLE_AGENCY):
        raise Forbidden("forbidden", "this endpoint is for auditor keys")
    return caller


async def require_agency(caller: SignedCaller) -> Caller:
    """Supervision-agency keys only (they write the registry of their region)."""
    if caller.role != ROLE_AGENCY:
        raise Forbidden("forbidden", "this endpoint is for supervision-agency keys")
    return caller


CallerDep = SignedCaller
LabDep = Annotated[Caller, Depends(require_lab)]
AuditorDep = Annotated[Caller, Depends(require_auditor)]
AgencyDep = Annotated[Caller, Depends(require_agency)]


def check_institution_access(session: Session, caller: Caller, institution: str) -> None:
    """403 `forbidden` unless the caller may see this institution's data: a lab only its
    own; an auditor every institution, or those of its region (R21); an agency those of
    its region."""
    if caller.role in (ROLE_AUDITOR, ROLE_AGENCY):
        audit_scope(session, caller.auditor_id).check(session, institution)
    elif caller.institution != institution:
        raise Forbidden("forbidden", "this belongs to another institution")


def lab_institution(caller: Caller) -> str:
    """The caller's institution (LabDep guarantees one)."""
    if not caller.institution:  # pragma: no cover - guarded by require_lab
        raise Forbidden("forbidden", "this endpoint is for lab keys")
    return caller.institution
