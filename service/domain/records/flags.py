"""Flags: rules a record broke on arrival (late contract, late test data, edited or late
key images; R9, R11, R13). A flag never refuses a record: it is written into the
record's body (`body.flags`) and, for the audit lists, as one `record_flags` row each."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import rfc3339
from service.domain.rules import Flag
from service.storage.models import Record, RecordFlag


def store_flags(
    session: Session, record: Record, institution: str, flags: Iterable[Flag], now: datetime
) -> None:
    """One `record_flags` row per flag of a record just appended (caller commits)."""
    for flag in flags:
        session.add(
            RecordFlag(
                record_id=record.id,
                institution=institution,
                record_type=record.type,
                rule=flag.rule,
                detail=json.dumps(flag.as_json(), ensure_ascii=False, sort_keys=True),
                created_at=now,
            )
        )


def flags_of(session: Session, record_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(RecordFlag).where(RecordFlag.record_id == record_id).order_by(RecordFlag.id)
    ).all()
    return [json.loads(r.detail) for r in rows]


def list_flags(
    session: Session,
    *,
    institution: str | None,
    rule: str | None,
    limit: int,
    after_id: int = 0,
    institutions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Flags oldest first; `institutions` limits them to those (an auditor's region)."""
    query = select(RecordFlag).where(RecordFlag.id > after_id)
    if institution is not None:
        query = query.where(RecordFlag.institution == institution)
    if institutions is not None:
        query = query.where(RecordFlag.institution.in_(institutions))
    if rule is not None:
        query = query.where(RecordFlag.rule == rule)
    rows = session.scalars(query.order_by(RecordFlag.id).limit(limit)).all()
    return [
        {
            "id": r.id,
            "record_id": r.record_id,
            "record_type": r.record_type,
            "institution": r.institution,
            "rule": r.rule,
            "detail": json.loads(r.detail),
            "flagged_at": rfc3339(r.created_at),
        }
        for r in rows
    ]
