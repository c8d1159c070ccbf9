"""The report facts tables (issue 14): one row per report code with what the console counts,
groups and searches (institution, region, project, test items, conclusion, status, issue
date, sealed / revoked, warning count), and one row per test item.

`refresh_facts` recomputes the rows of some codes from the records themselves (the code's
row in `report_codes`, its latest metadata record, the test records that record cites, the
project record, the kept warnings) and is called in the same transaction as every write
that changes them: issuance, metadata, seal (through `warnings.refresh`), revocation and
supersede, numbering void. `rebuild_facts` writes them all (migration 0018's back-fill).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from service.clock import CHINA_TZ, as_utc
from service.storage.models import (
    Institution,
    Record,
    RecordParent,
    ReportCode,
    ReportFactItem,
    ReportFactRow,
    ReportWarning,
)

CONCLUSIONS = ("pass", "fail")
REVOKED_STATUSES = ("revoked", "superseded")
_CHUNK = 500


def body_of(canonical: bytes | None) -> dict[str, Any]:
    """The `body` object of a record's canonical bytes ({} when there is none)."""
    if not canonical:
        return {}
    try:
        obj = orjson.loads(canonical)
    except orjson.JSONDecodeError:
        return {}
    body = obj.get("body") if isinstance(obj, dict) else None
    return body if isinstance(body, dict) else {}


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def compute_facts(session: Session, codes: Sequence[str]) -> list[dict[str, Any]]:
    """The fact rows of these codes, read from the records (a `test_item_list` key holds
    the items for report_fact_items)."""
    rows: list[dict[str, Any]] = []
    by_record: dict[str, dict[str, Any]] = {}
    projects: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for part in _chunks(list(codes)):
        first = len(rows)
        query = (
            select(ReportCode.code, ReportCode.institution, Institution.region,
                   ReportCode.report_no, ReportCode.year, ReportCode.status,
                   ReportCode.issued_at, ReportCode.sealed_at, ReportCode.report_record_id,
                   ReportCode.project_record_id, Record.canonical)
            .join(Institution, Institution.uscc == ReportCode.institution)
            .outerjoin(Record, Record.id == ReportCode.report_record_id)
            .where(ReportCode.code.in_(part))
        )
        for (code, inst, region, report_no, year, status, issued_at, sealed_at, report_rid,
             project_rid, canonical) in session.execute(query):
            body = body_of(canonical)
            issued_on = as_utc(issued_at).astimezone(CHINA_TZ).date()
            try:
                issued_on = date.fromisoformat(str(body["issued_on"]))
            except (KeyError, ValueError):
                pass
            conclusion = body.get("conclusion")
            row: dict[str, Any] = {"code": code, "institution": inst, "region": region,
                   "report_no": report_no, "year": year, "status": status,
                   "issued_at": as_utc(issued_at), "issued_on": issued_on,
                   "sealed": sealed_at is not None, "revoked": status in REVOKED_STATUSES,
                   "conclusion": conclusion if conclusion in CONCLUSIONS else None,
                   "project_record_id": project_rid, "project_name": "",
                   "test_item_list": [], "warning_count": 0}
            rows.append(row)
            if report_rid:
                by_record[report_rid] = row
            projects[project_rid].append(row)
        warned = session.execute(
            select(ReportWarning.report_code, func.count(ReportWarning.id))
            .where(ReportWarning.report_code.in_(part)).group_by(ReportWarning.report_code))
        counts = {k: n for k, n in warned}
        for row in rows[first:]:
            row["warning_count"] = int(counts.get(row["code"], 0))
    for part in _chunks(list(by_record)):
        cited = session.execute(
            select(RecordParent.child_id, Record.canonical)
            .join(Record, Record.id == RecordParent.parent_id)
            .where(RecordParent.child_id.in_(part), Record.type == "test_record"))
        for child_id, canonical in cited:
            item = body_of(canonical).get("test_item")
            items = by_record[child_id]["test_item_list"]
            if isinstance(item, str) and item and item not in items:
                items.append(item)
    for part in _chunks(list(projects)):
        for rid, canonical in session.execute(
                select(Record.id, Record.canonical).where(Record.id.in_(part))):
            name = body_of(canonical).get("name")
            for row in projects[rid]:
                row["project_name"] = name if isinstance(name, str) else ""
    for row in rows:
        row["test_item_list"].sort()
        row["test_items"] = "\n".join(row["test_item_list"])
    return rows


def _write(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = {c.name for c in ReportFactRow.__table__.columns}
    session.execute(insert(ReportFactRow), [{k: r[k] for k in columns} for r in rows])
    items = [{"code": r["code"], "test_item": item, "institution": r["institution"],
              "region": r["region"], "issued_on": r["issued_on"], "conclusion": r["conclusion"]}
             for r in rows for item in r["test_item_list"]]
    if items:
        session.execute(insert(ReportFactItem), items)


def refresh_facts(session: Session, codes: Sequence[str]) -> None:
    """Rewrite the fact rows of these codes from the records, in the caller's transaction."""
    codes = [c for c in dict.fromkeys(codes) if c]
    if not codes:
        return
    session.flush()
    rows = compute_facts(session, codes)
    for part in _chunks(codes):
        session.execute(delete(ReportFactItem).where(ReportFactItem.code.in_(part)))
        session.execute(delete(ReportFactRow).where(ReportFactRow.code.in_(part)))
    _write(session, rows)


def rebuild_facts(session: Session) -> int:
    """Every report code's facts, written afresh (the migration's back-fill); the count."""
    session.execute(delete(ReportFactItem))
    session.execute(delete(ReportFactRow))
    done = 0
    after = ""
    while True:
        codes = list(session.scalars(
            select(ReportCode.code).where(ReportCode.code > after)
            .order_by(ReportCode.code).limit(5000)))
        if not codes:
            return done
        _write(session, compute_facts(session, codes))
        done += len(codes)
        after = codes[-1]
