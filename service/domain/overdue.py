"""Data that never arrived (R13: 自动识别未及时上传的检测数据, std 4.3.4 items 4 and 5).

`rules.py` flags data that arrived late. This finds what has not arrived at all:

- `receipt`: a sample registered (sealed on site) more than `rules.receipt_due_days`
  ago that no receipt names through its seal: the lab never recorded receiving it;
- `test_data`: a sample the lab received and accepted more than
  `rules.test_data_due_days` ago with no test record naming it.

A refused sample (its receipt says `accepted: false`) expects no test data. Each item
names the sample record and its code, so an auditor can follow it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import Session, aliased

from service.clock import as_utc, rfc3339
from service.settings import RulesSettings
from service.storage.models import Record, RecordParent, SampleCode

KIND_RECEIPT = "receipt"
KIND_TEST_DATA = "test_data"


def find_overdue(
    session: Session,
    rules: RulesSettings,
    *,
    institution: str | None,
    now: datetime,
    limit: int,
    institutions: Sequence[str] | Select[Any] | None = None,
) -> list[dict[str, Any]]:
    """Overdue samples, oldest first (at most `limit` of each kind); `institutions` (a
    list or a subquery) limits them to those (an auditor's region)."""
    only = _Only(institution, institutions)
    items = _never_received(
        session, only, now - timedelta(days=rules.receipt_due_days), limit
    ) + _never_tested(session, only, now - timedelta(days=rules.test_data_due_days), limit)
    for item in items:
        waited = now - item.pop("since_dt")
        item["days_waiting"] = round(waited.total_seconds() / 86400, 1)
    items.sort(key=lambda i: str(i["since"]))
    return items


@dataclass(frozen=True)
class _Only:
    institution: str | None
    institutions: Sequence[str] | Select[Any] | None

    def where(self, query: Any, column: Any) -> Any:
        if self.institution is not None:
            query = query.where(column == self.institution)
        if self.institutions is not None:
            query = query.where(column.in_(self.institutions))
        return query


def _child_of(parent_id: Any, child_type: str) -> Any:
    """EXISTS a record of `child_type` naming `parent_id` as a parent."""
    link, child = aliased(RecordParent), aliased(Record)
    return exists().where(
        link.parent_id == parent_id, child.id == link.child_id, child.type == child_type
    )


def _never_received(
    session: Session, only: _Only, cutoff: datetime, limit: int
) -> list[dict[str, Any]]:
    sample = aliased(Record)
    seal_link, seal = aliased(RecordParent), aliased(Record)
    received = exists().where(
        seal_link.parent_id == sample.id,
        seal.id == seal_link.child_id,
        seal.type == "seal",
        _child_of(seal.id, "receipt"),
    )
    query = (
        select(sample.id, sample.institution, sample.created_at, SampleCode.sample_code)
        .join(SampleCode, SampleCode.record_id == sample.id)
        .where(sample.type == "sample", sample.created_at < cutoff, ~received)
        .order_by(sample.created_at)
        .limit(limit)
    )
    query = only.where(query, sample.institution)
    return [
        _item(KIND_RECEIPT, sample_id, inst, code, created, None)
        for sample_id, inst, created, code in session.execute(query)
    ]


def _never_tested(
    session: Session, only: _Only, cutoff: datetime, limit: int
) -> list[dict[str, Any]]:
    receipt = aliased(Record)
    receipt_link, seal = aliased(RecordParent), aliased(Record)
    seal_link, sample = aliased(RecordParent), aliased(Record)
    query = (
        select(
            sample.id,
            sample.institution,
            SampleCode.sample_code,
            receipt.id,
            receipt.created_at,
            receipt.canonical,
        )
        .join(receipt_link, receipt_link.child_id == receipt.id)
        .join(seal, and_(seal.id == receipt_link.parent_id, seal.type == "seal"))
        .join(seal_link, seal_link.child_id == seal.id)
        .join(sample, and_(sample.id == seal_link.parent_id, sample.type == "sample"))
        .join(SampleCode, SampleCode.record_id == sample.id)
        .where(
            receipt.type == "receipt",
            receipt.created_at < cutoff,
            ~_child_of(sample.id, "test_record"),
        )
        .order_by(receipt.created_at)
    )
    query = only.where(query, receipt.institution)
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for sample_id, inst, code, receipt_id, received, canonical in session.execute(query):
        if sample_id in seen or not _accepted(canonical):
            continue
        seen.add(sample_id)
        items.append(_item(KIND_TEST_DATA, sample_id, inst, code, received, receipt_id))
        if len(items) >= limit:
            break
    return items


def _accepted(canonical: bytes) -> bool:
    try:
        body = orjson.loads(canonical).get("body") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return True  # unreadable: better listed than hidden
    return body.get("accepted") is not False


def _item(
    kind: str,
    sample_id: str,
    institution: str,
    sample_code: str,
    since: datetime,
    receipt_id: str | None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "institution": institution,
        "sample_record_id": sample_id,
        "sample_code": sample_code,
        "receipt_record_id": receipt_id,
        "since": rfc3339(as_utc(since)),
        "since_dt": as_utc(since),
    }
