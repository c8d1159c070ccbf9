"""The nonconforming-results ledger (检测结果不合格项目台账, 57号部令 art. 26; R12).

A report with the conclusion `fail` gets one ledger entry per report code, and the
local supervision agency (项目属地质量监督机构) is notified through the durable
notification queue (service/domain/notify.py), in the caller's transaction. The same
queue carries the other warnings the agency hears of when the record arrives: a failed
seal check (`seal_check_failed`) and the registry's warnings (`registry_warning`:
witness_unverified, device_unregistered, calibration_expired, tester_unregistered,
witness_replacement_late; docs/registry.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import rfc3339, utc_now
from service.domain.notify import enqueue
from service.domain.rules import Flag
from service.storage.models import (
    Institution,
    NonconformingEntry,
    Notification,
    Record,
    RecordParent,
    ReportCode,
)

EVENT_NONCONFORMING = "nonconforming_result"
#: A receipt whose seal check (验封) failed: the agency hears of it like a failed result.
EVENT_SEAL_CHECK_FAILED = "seal_check_failed"
#: A record that arrived with warnings of the registry (docs/registry.md).
EVENT_REGISTRY_WARNING = "registry_warning"


def record_nonconforming(
    session: Session,
    report_record: Record,
    institution: str,
    code: str,
    details: Mapping[str, Any],
) -> NonconformingEntry:
    """Enter a failed report into the ledger and queue the agency's notification.

    Idempotent per (institution, code): a report whose metadata is sent again keeps its
    first entry and is not notified twice. Writes into the caller's transaction; the
    caller commits (the notification is sent only after that commit).
    """
    existing = _entry(session, institution, code)
    if existing is not None:
        return existing
    now = utc_now()
    details_json = json.dumps(dict(details), ensure_ascii=False, sort_keys=True, default=str)
    entry = NonconformingEntry(
        institution=institution,
        code=code,
        report_record_id=report_record.id,
        details=details_json,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(entry)
            session.flush()
    except IntegrityError:  # another request for the same code won the race
        winner = _entry(session, institution, code)
        assert winner is not None
        return winner
    lab = session.get(Institution, institution)
    project = _project_of(session, code)
    notification = enqueue(
        session,
        kind=EVENT_NONCONFORMING,
        institution=institution,
        payload={
            **_addressee(lab, institution, project),
            "report_code": code,
            "report_record_id": report_record.id,
            "report_leaf_hash": report_record.leaf_hash,
            "details": json.loads(details_json),
            "recorded_at": rfc3339(now),
        },
    )
    entry.notification_id = notification.id
    return entry


def _addressee(
    lab: Institution | None, institution: str, project: dict[str, Any] | None
) -> dict[str, Any]:
    """Who a notification is about and which agency hears of it: the project's (属地), not
    the lab's, so receivers route on `agency_region`."""
    return {
        "institution": institution,
        "institution_name": lab.name if lab else None,
        "region": lab.region if lab else None,
        "agency_region": (project or {}).get("region") or (lab.region if lab else None),
        "project": project,
    }


def notify_seal_check_failed(
    session: Session, receipt: Record, institution: str, seal_check: Mapping[str, Any]
) -> Notification:
    """Queue the project's supervision agency's notification of a failed seal check, in
    the caller's transaction (sent after commit)."""
    lab = session.get(Institution, institution)
    body = json.loads(receipt.canonical).get("body") or {}
    project = _project_summary(_ancestor_project(session, receipt.id))
    return enqueue(
        session,
        kind=EVENT_SEAL_CHECK_FAILED,
        institution=institution,
        payload={
            **_addressee(lab, institution, project),
            "sample_code": body.get("sample_code"),
            "receipt_record_id": receipt.id,
            "receipt_leaf_hash": receipt.leaf_hash,
            "seal_record_id": body.get("seal_record_id"),
            "failed_checks": list(seal_check.get("failed") or []),
            "recorded_at": rfc3339(utc_now()),
        },
    )


def notify_flags(
    session: Session, record: Record, institution: str, flags: Sequence[Flag]
) -> Notification:
    """Queue the project's supervision agency's notification of a record that arrived with
    registry warnings (`flags`: the record's §7.2 flags the agency hears of), in the
    caller's transaction (sent after commit)."""
    lab = session.get(Institution, institution)
    body = json.loads(record.canonical).get("body") or {}
    project = _project_summary(
        record if record.type == "project" else _ancestor_project(session, record.id)
    )
    return enqueue(
        session,
        kind=EVENT_REGISTRY_WARNING,
        institution=institution,
        payload={
            **_addressee(lab, institution, project),
            "record_id": record.id,
            "record_type": record.type,
            "record_leaf_hash": record.leaf_hash,
            "sample_code": body.get("sample_code"),
            "warnings": [f.as_json() for f in flags],
            "recorded_at": rfc3339(utc_now()),
        },
    )


def _ancestor_project(session: Session, record_id: str) -> Record | None:
    """The project a record derives from (the chain is a few parents deep)."""
    frontier = [record_id]
    for _ in range(8):
        rows = session.scalars(
            select(Record)
            .join(RecordParent, RecordParent.parent_id == Record.id)
            .where(RecordParent.child_id.in_(frontier))
        ).all()
        project = next((r for r in rows if r.type == "project"), None)
        if project is not None or not rows:
            return project
        frontier = [r.id for r in rows if r.type != "media"]
    return None


def _project_of(session: Session, code: str) -> dict[str, Any] | None:
    """The report's project as the agency needs it: record id, name, region, agency."""
    row = session.get(ReportCode, code)
    record = session.get(Record, row.project_record_id) if row is not None else None
    return _project_summary(record)


def _project_summary(record: Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    try:
        body = json.loads(record.canonical).get("body") or {}
    except (ValueError, AttributeError):
        body = {}
    return {
        "record_id": record.id,
        "name": body.get("name"),
        "project_no": body.get("project_no"),
        "region": body.get("region"),
        "supervision_agency": body.get("supervision_agency"),
    }


def _entry(session: Session, institution: str, code: str) -> NonconformingEntry | None:
    return session.scalars(
        select(NonconformingEntry).where(
            NonconformingEntry.institution == institution, NonconformingEntry.code == code
        )
    ).first()


def entry_json(entry: NonconformingEntry, notification: Notification | None) -> dict[str, Any]:
    return {
        "institution": entry.institution,
        "code": entry.code,
        "report_record_id": entry.report_record_id,
        "details": json.loads(entry.details),
        "recorded_at": _ts(entry.created_at),
        "notification": (
            {
                "id": notification.id,
                "status": notification.status,
                "attempts": notification.attempts,
                "last_error": notification.last_error,
                "delivered_at": _ts(notification.delivered_at),
            }
            if notification is not None
            else None
        ),
    }


def _ts(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def list_ledger(
    session: Session,
    *,
    institution: str | None,
    limit: int,
    after_id: int = 0,
    institutions: Sequence[str] | Select[Any] | None = None,
) -> list[dict[str, Any]]:
    """Ledger entries (oldest first) with the delivery state of their notification;
    `institutions` (a list or a subquery) limits them to those (an auditor's region)."""
    query = select(NonconformingEntry).where(NonconformingEntry.id > after_id)
    if institution is not None:
        query = query.where(NonconformingEntry.institution == institution)
    if institutions is not None:
        query = query.where(NonconformingEntry.institution.in_(institutions))
    entries = session.scalars(query.order_by(NonconformingEntry.id).limit(limit)).all()
    out = []
    for entry in entries:
        notification = (
            session.get(Notification, entry.notification_id) if entry.notification_id else None
        )
        out.append({"id": entry.id, **entry_json(entry, notification)})
    return out
