"""Reading records of the traceable chain back: the stored JSON, one record by id, the
answer to a record POST and the lab's or auditor's view of one record."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from service.domain.records.flags import flags_of
from service.storage.models import Record


def record_json(record: Record) -> dict[str, Any]:
    """The stored evidence record (INTERFACE §1) as a JSON object."""
    obj: dict[str, Any] = json.loads(record.canonical)
    return obj


def find_record(session: Session, record_id: str) -> Record | None:
    """The record with this id (None for an unknown or impossible id)."""
    return session.get(Record, record_id) if len(record_id) <= 26 else None


def record_summary(record: Record) -> dict[str, Any]:
    """The answer to a record POST: id, leaf, type, time, and what the server derived."""
    obj = record_json(record)
    body = obj.get("body", {})
    out: dict[str, Any] = {
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "type": record.type,
        "created_at": obj["created_at"],
    }
    if "flags" in body:
        out["flags"] = body["flags"]
    if "seal_check" in body:
        out["seal_check"] = body["seal_check"]
    return out


def record_view(session: Session, record: Record) -> dict[str, Any]:
    """`GET /api/v1/records/{id}`: the evidence record, its leaf hash and its flags."""
    return {
        "record": record_json(record),
        "leaf_hash": record.leaf_hash,
        "flags": flags_of(session, record.id),
    }
