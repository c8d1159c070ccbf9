"""`Idempotency-Key` on POST/PUT (INTERFACE.md §5.2), reusable by every router.

    @router.post("/api/v1/things", status_code=201)
    def create(body: ThingIn, caller: LabDep, session: SessionDep, idem: IdempotencyDep):
        return idem.run(session, lambda: (201, do_the_work(session, caller, body)))

`run` claims the key by inserting its row in the route's own transaction *before* the
work, so a concurrent request with the same key waits on the primary key (PostgreSQL)
or the write lock (SQLite) and then replays the committed answer; the answer is
stored and committed atomically with the work. If the work fails, nothing is stored
and a retry runs again. Keys are scoped to the caller's owner (institution or
auditor), so a rotated key keeps its predecessor's answers. The request hash covers
method, path, canonical query and body bytes: the same key with any other request is
422 `idempotency_mismatch`. Only successful (2xx) answers are stored.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service.api.auth import Caller, authenticate, body_hash_of, raw_query, request_path
from service.client import canonical_query
from service.errors import Conflict, Invalid
from service.storage import idempotency as store
from service.storage.idempotency import StoredAnswer

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # 1..MAX_KEY_CHARS visible ASCII
REPLAY_HEADER = "Idempotent-Replayed"
JSON = "application/json"


@dataclass(frozen=True)
class Idempotency:
    key: str | None
    scope: str
    request_hash: str
    model: Any = None  # the route's response model: every first answer is shaped by it

    def _replay(self, stored: StoredAnswer) -> Response:
        if stored.request_hash != self.request_hash:
            raise Invalid(
                "idempotency_mismatch",
                "this Idempotency-Key was used with a different request",
            )
        return Response(
            content=stored.body,
            status_code=stored.status_code,
            media_type=stored.media_type,
            headers={REPLAY_HEADER: "true"},
        )

    def replay(self, session: Session) -> Response | None:
        """The stored answer for this key (422 if it was for another request), or None."""
        if self.key is None:
            return None
        stored = store.stored_answer(session, self.scope, self.key)
        return None if stored is None else self._replay(stored)

    def run(self, session: Session, work: Callable[[], tuple[int, Any]]) -> Response:
        """Run `work` -> (status, JSON payload) once per key; commit; answer as JSON."""
        if self.key is None:
            status, payload = work()
            session.commit()
            return Response(self._dump(payload), status_code=status, media_type=JSON)
        replayed = self.replay(session)
        if replayed is not None:
            return replayed
        claim = store.claim(
            session, self.scope, self.key, self.request_hash, JSON, int(time.time())
        )
        if claim is None:
            replayed = self.replay(session)
            if replayed is not None:
                return replayed
            raise Conflict(
                "idempotency_in_progress", "a request with this Idempotency-Key is running"
            )
        status, payload = work()
        body = self._dump(payload)
        claim.fill(status, body)
        session.commit()
        return Response(body, status_code=status, media_type=JSON)


    def _dump(self, payload: Any) -> bytes:
        return dump_answer(self.model, payload)


def dump_answer(model: Any, payload: Any) -> bytes:
    """The JSON bytes of an answer, serialised through the route's response model as FastAPI
    does for routes that return data: it validates (a payload that does not fit its model is a
    bug, not an answer) and keeps only the model's fields. `exclude_unset` keeps the wire as
    the domain wrote it: a field the payload leaves out stays out."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        payload = model.model_validate(payload).model_dump(
            mode="json", by_alias=True, exclude_unset=True
        )
    return orjson.dumps(jsonable_encoder(payload))


def request_fingerprint(method: str, path: str, query: bytes | str, body_sha256: str) -> str:
    text = "\n".join([method.upper(), path, canonical_query(query), body_sha256])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _key_schema(schema: dict[str, Any]) -> None:
    schema.pop("anyOf", None)  # a header is absent or a string, never null
    schema.update(type="string", minLength=1, maxLength=MAX_KEY_CHARS, pattern="^[!-~]+$")


#: The header as the OpenAPI document declares it. The schema's limits only describe
#: (`json_schema_extra`): the check is `KEY_RE` below, with its own problem code.
KeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="Optional retry key (INTERFACE.md §5.2), 1–255 visible ASCII characters, "
        "scoped to your institution: the same key with the same request returns the first "
        f"answer again (with `{REPLAY_HEADER}: true`); with another request, 422 "
        "`idempotency_mismatch`. Only successful answers are kept (24 h). Not signed.",
        json_schema_extra=lambda schema: _key_schema(schema),
    ),
]


async def get_idempotency(request: Request, _declared: KeyHeader = None) -> Idempotency:
    caller: Caller = await authenticate(request)
    key = request.headers.get(HEADER)
    if key is not None and not KEY_RE.match(key):
        raise Invalid(
            "invalid_idempotency_key",
            f"{HEADER} must be 1-{MAX_KEY_CHARS} visible ASCII characters",
        )
    body_hash = body_hash_of(request) or hashlib.sha256(await request.body()).hexdigest()
    route = request.scope.get("route")
    return Idempotency(
        model=getattr(route, "response_model", None),
        key=key,
        scope=caller.scope,
        request_hash=request_fingerprint(
            request.method, request_path(request), raw_query(request), body_hash
        ),
    )


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
