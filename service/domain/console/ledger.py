"""Handling of nonconforming results (不合格处置, std 4.3.4 item 6, 4.2.2 item 5): a
supervision agency records each step it took on a ledger entry (notified, re-test
ordered, site measures, closed). Each step is a `ledger_action` evidence record (INTERFACE
§7.4) whose parent is the report record the entry was made for, so it is anchored like
every other record; the row in `nonconforming_actions` indexes it. An entry is closed once
its latest step is `closed`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import rfc3339, utc_now
from service.domain.accounts import ROLE_AGENCY
from service.domain.console.auth import ConsoleUser
from service.domain.evidence import append_record
from service.errors import Forbidden, Invalid, NotFound
from service.storage.models import NonconformingAction, NonconformingEntry, Record

#: Handling steps, as a person reads them.
ACTIONS = {"notified": "已通知相关单位", "retest_ordered": "责令复检",
           "site_measures": "现场处置措施", "closed": "处置完毕（闭环）"}
MAX_NOTE_CHARS = 1000


def entry_for(session: Session, institution: str, code: str) -> NonconformingEntry | None:
    return session.scalar(select(NonconformingEntry).where(
        NonconformingEntry.institution == institution, NonconformingEntry.code == code))


def record_action(session: Session, user: ConsoleUser, *, institution: str, code: str,
                  action: str, note: str) -> dict[str, Any]:
    """Write one handling step (caller commits). Only an agency account, for a report of its
    region (the caller has checked the region)."""
    if user.kind != ROLE_AGENCY:
        raise Forbidden("forbidden", "only a supervision agency records handling steps")
    if action not in ACTIONS:
        raise Invalid("invalid_filter", f"action must be one of {', '.join(ACTIONS)}")
    note = (note or "").strip()
    if not note or len(note) > MAX_NOTE_CHARS:
        raise Invalid("invalid_reason", f"describe the step in 1 to {MAX_NOTE_CHARS} characters")
    entry = entry_for(session, institution, code)
    if entry is None:
        raise NotFound("unknown_code", f"report {code} is not in the nonconforming ledger")
    report = session.get(Record, entry.report_record_id)
    assert report is not None
    now = utc_now()
    record = append_record(
        session, type="ledger_action", institution=institution,
        body={"event": "nonconforming_action", "code": code, "action": action, "note": note,
              "agency": user.name, "agency_account": user.account_id,
              "region": user.region, "at": rfc3339(now)},
        parents=[report],
    )
    session.add(NonconformingAction(entry_id=entry.id, action=action, note=note,
                                    record_id=record.id, account_id=user.account_id,
                                    account_name=user.name, at=now))
    session.flush()
    return {"record_id": record.id, "action": action}


def actions_of(session: Session, entry_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Every entry's steps, oldest first."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not entry_ids:
        return out
    rows = session.scalars(select(NonconformingAction).where(
        NonconformingAction.entry_id.in_(list(entry_ids))).order_by(NonconformingAction.id))
    for r in rows:
        out[r.entry_id].append({"action": r.action, "label": ACTIONS.get(r.action, r.action),
                                "note": r.note, "record_id": r.record_id,
                                "by": r.account_name, "at": rfc3339(r.at)})
    return out


def is_closed(steps: Sequence[dict[str, Any]]) -> bool:
    return bool(steps) and steps[-1]["action"] == "closed"


def view_of(session: Session, institution: str, code: str) -> dict[str, Any] | None:
    """The report's ledger entry as the report page shows it (None: not in the ledger)."""
    entry = entry_for(session, institution, code)
    if entry is None:
        return None
    steps = actions_of(session, [entry.id]).get(entry.id, [])
    return {"steps": steps, "closed": is_closed(steps), "actions": ACTIONS}
