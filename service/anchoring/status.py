"""What the anchoring worker records about itself (`service_state` keys), written by the
worker, and how far behind anchoring is, read from the database so every API process
reports the same (/healthz, /metrics) whichever process runs the worker."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from service.anchoring.contract import ChainError
from service.storage.leaves import WATERMARK, pending_filter
from service.storage.models import Batch, KeyValue, Outbox

# service_state keys the anchoring worker maintains.
STATE_ANCHOR_FAILURES = "anchor_failures"
STATE_LAST_ERROR = "anchor_last_error"
STATE_WORKER_HEARTBEAT = "worker_heartbeat"
#: Set (non-empty) while the worker refuses to anchor because database and chain disagree.
STATE_HALTED = "anchor_halted"
STATE_LEADER = "worker_leader"
#: JSON {"anchorer"|"revoker": {"address", "DEFAULT_ADMIN_ROLE", "ANCHORER_ROLE",
#: "REVOKER_ROLE"}} as the worker last read it from the registry.
STATE_CHAIN_ROLES = "chain_roles"
#: Set (non-empty) while the anchoring key lacks ANCHORER_ROLE (nothing is anchored).
STATE_ROLE_MISSING = "anchor_role_missing"
#: How many times the worker found anchors dropped or moved by a chain reorganisation.
STATE_REORGS = "anchor_reorgs"


def anchoring_status(session: Session) -> dict[str, Any]:
    now = time.time()
    pending, oldest = session.execute(
        select(func.count(Outbox.seq), func.min(Outbox.enqueued_at)).where(
            pending_filter(session.execute(WATERMARK).scalar())
        )
    ).one()
    unconfirmed = (
        session.scalar(select(func.count(Batch.seq)).where(Batch.status != "anchored")) or 0
    )
    last_seq = session.scalar(select(func.max(Batch.seq)).where(Batch.status == "anchored"))
    state = {kv.key: kv.value for kv in session.scalars(select(KeyValue)).all()}
    return {
        "pending_leaves": int(pending or 0),
        "oldest_pending_age_s": round(now - oldest, 3) if oldest is not None else 0.0,
        "unconfirmed_batches": int(unconfirmed),
        "last_anchored_seq": int(last_seq or 0),
        "anchor_failures": int(state.get(STATE_ANCHOR_FAILURES, "0")),
        "last_error": public_error(state.get(STATE_LAST_ERROR) or ""),
        "halted": state.get(STATE_HALTED) or None,
        "role_missing": state.get(STATE_ROLE_MISSING) or None,
        "reorgs": int(state.get(STATE_REORGS, "0") or 0),
        "worker_heartbeat_age_s": (
            round(now - float(state[STATE_WORKER_HEARTBEAT]), 3)
            if STATE_WORKER_HEARTBEAT in state
            else None
        ),
    }


def chain_roles(session: Session) -> dict[str, Any] | None:
    """The roles the configured keys held when the worker last looked (STATE_CHAIN_ROLES),
    or None before it has."""
    stored = session.scalar(select(KeyValue.value).where(KeyValue.key == STATE_CHAIN_ROLES))
    try:
        value = json.loads(stored) if stored else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_codes(cls: type[ChainError]) -> dict[str, str]:
    codes = {cls.__name__: cls.code}
    for sub in cls.__subclasses__():
        codes.update(_error_codes(sub))
    return codes


def public_error(stored: str) -> str | None:
    """The kind of the worker's last failure, fit for an unauthenticated answer.

    The worker stores `ExceptionClass: message`; a message may hold the node's URL (with
    a token in it) or a driver's text, so /healthz shows only a stable code (the full text
    is in the worker's log): the chain error's code, `database_error`, or `anchoring_error`.
    """
    if not stored:
        return None
    name = stored.split(":", 1)[0].strip()
    code = _error_codes(ChainError).get(name)
    if code is not None:
        return code
    if "Error" in name and ("SQL" in name or "Operational" in name or "psycopg" in stored):
        return "database_error"
    return "anchoring_error"


def write_state(engine: Engine, values: dict[str, str]) -> None:
    """Set `service_state` keys (insert those not there yet), in one transaction."""
    with engine.begin() as conn:
        for key, value in values.items():
            done = conn.execute(
                update(KeyValue).where(KeyValue.key == key).values(value=value)
            ).rowcount
            if not done:
                conn.execute(insert(KeyValue).values(key=key, value=value))


def _incremented(engine: Engine, key: str) -> str:
    with engine.begin() as conn:
        current = conn.execute(select(KeyValue.value).where(KeyValue.key == key)).scalar()
    return str(int(current or 0) + 1)


def count_event(engine: Engine, key: str) -> None:
    """Add one to the counter kept in `service_state` key `key` (e.g. STATE_REORGS)."""
    write_state(engine, {key: _incremented(engine, key)})


def record_failure(engine: Engine, message: str) -> None:
    """Count one failed anchoring attempt and keep `message` as the last error."""
    write_state(engine, {STATE_ANCHOR_FAILURES: _incremented(engine, STATE_ANCHOR_FAILURES),
                         STATE_LAST_ERROR: message})
