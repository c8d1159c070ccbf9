"""A report's warnings (INTERFACE §7.2): what is missing or late, never "changed".

Computed from the report's anchored records alone, so anyone can recompute them:

- custody and citation warnings from the report's history (verifier.custody, the same
  function jianzheng-verify runs on the bundle): `custody_*_missing`, `seal_check_failed`,
  `test_record_uncited`;
- the flags the platform wrote into the bodies of the records the report rests on (its
  ancestry and its history) when they arrived: `contract_late`, `test_data_late`,
  `media_late`, `test_plan_late`, `onsite_without_plan`, and the registry's
  `witness_unverified`, `device_unregistered`, `calibration_expired`, `tester_unregistered`.

`evidence_complete` is false when a custody warning or a failed seal check is present.
The warnings of a report's latest record are also kept in `report_warnings` for the audit
lists (`store`, `list_warnings`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.clock import rfc3339, utc_now
from service.storage.models import Institution, Record, ReportWarning
from service.storage.report_facts import refresh_facts
from verifier import custody
from verifier.custody import EvidenceWarning

#: Flags (rules.Flag.rule) that are report warnings, with the sentence a person reads.
FLAG_WARNINGS: dict[str, str] = {
    "contract_late": "检测合同未在签订后规定的工作日内上传",
    "test_data_late": "检测数据未在规定时限内上传",
    "media_late": "关键影像资料在拍摄后超过规定时限才上传",
    "test_plan_late": "检测方案未在现场检测开始前规定的工作日内上传",
    "onsite_without_plan": "现场检测没有对应的检测方案",
    "witness_unverified": "见证人员的密钥未经监督机构核验",
    "device_unregistered": "检测设备未在机构设备登记中",
    "calibration_expired": "检测设备的检定/校准已过有效期",
    "tester_unregistered": "检测人员未在机构人员登记中",
}

#: Record types whose flags are report warnings.
_TYPE_LABEL = {
    "contract": "合同",
    "test_record": "检测记录",
    "media": "影像资料",
    "test_plan": "检测方案",
    "seal": "电子封志",
    "witness": "见证记录",
}


@dataclass(frozen=True)
class ReportWarnings:
    warnings: tuple[EvidenceWarning, ...]

    @property
    def evidence_complete(self) -> bool:
        return not any(w.code in custody.INCOMPLETE_CODES for w in self.warnings)

    def as_json(self) -> list[dict[str, Any]]:
        return [w.as_json() for w in self.warnings]


def _obj(record: Record) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(record.canonical)
    return obj


def flag_warnings(records: Mapping[str, Mapping[str, Any]]) -> list[EvidenceWarning]:
    """One warning per flag of FLAG_WARNINGS in the records' bodies."""
    out: list[EvidenceWarning] = []
    in_order = sorted(records.values(), key=lambda r: (str(r.get("created_at")), str(r.get("id"))))
    for record in in_order:
        body = record.get("body")
        flags = body.get("flags") if isinstance(body, Mapping) else None
        if not isinstance(flags, list):
            continue
        for flag in flags:
            rule = flag.get("rule") if isinstance(flag, Mapping) else None
            if isinstance(rule, str) and rule in FLAG_WARNINGS:
                what = _TYPE_LABEL.get(str(record.get("type")), "记录")
                detail = f"{what}：{FLAG_WARNINGS[rule]}"
                out.append(EvidenceWarning(rule, str(record.get("id")), detail))
    return out


def compute(
    report_records: Mapping[str, Mapping[str, Any]], records: Mapping[str, Mapping[str, Any]]
) -> ReportWarnings:
    """The warnings of a report from its records (leaf hash -> record object): the report's
    own records and every record its ancestry and history name."""
    found = custody.evidence_warnings(report_records, records)
    found += flag_warnings(records)
    return ReportWarnings(tuple(found))


def _ancestry(session: Session, start: Sequence[Record]) -> dict[str, Record]:
    """The records and everything they derive from, by leaf hash (waves of one query)."""
    found = {r.leaf_hash: r for r in start}
    frontier = list(found.values())
    while frontier:
        wanted: set[str] = set()
        for record in frontier:
            for parent in _obj(record).get("parents", []):
                if isinstance(parent, str) and parent not in found:
                    wanted.add(parent)
        if not wanted:
            break
        rows = session.scalars(select(Record).where(Record.leaf_hash.in_(sorted(wanted)))).all()
        frontier = [r for r in rows if r.leaf_hash not in found]
        found.update((r.leaf_hash, r) for r in frontier)
    return found


def for_report(session: Session, code: str) -> ReportWarnings:
    """The warnings of canonical `code` as its records stand in the database."""
    reports = session.scalars(
        select(Record).where(Record.code == code, Record.type == "report")
    ).all()
    report_objs = {r.leaf_hash: _obj(r) for r in reports}
    history = custody.history_of(report_objs.values())
    named = sorted({leaf for leaves in history.values() for leaf in leaves} | set(history))
    history_rows = (
        session.scalars(select(Record).where(Record.leaf_hash.in_(named))).all() if named else []
    )
    records = _ancestry(session, [*reports, *history_rows])
    return compute(report_objs, {leaf: _obj(r) for leaf, r in records.items()})


def store(
    session: Session,
    code: str,
    institution: str,
    report_record_id: str,
    found: ReportWarnings,
    *,
    now: datetime | None = None,
) -> None:
    """Replace the kept warnings of `code` (the caller commits)."""
    inst = session.get(Institution, institution)
    region = inst.region if inst is not None else ""
    now = now or utc_now()
    session.execute(delete(ReportWarning).where(ReportWarning.report_code == code))
    session.add_all(
        ReportWarning(
            report_code=code,
            institution=institution,
            region=region,
            code=w.code,
            record_id=w.record_id,
            detail=w.detail,
            report_record_id=report_record_id,
            created_at=now,
        )
        for w in found.warnings
    )


def refresh(
    session: Session, code: str, institution: str, report_record_id: str
) -> ReportWarnings:
    """Compute and keep the warnings of a report whose record was just appended."""
    session.flush()
    found = for_report(session, code)
    store(session, code, institution, report_record_id, found)
    refresh_facts(session, [code])  # the console's facts: metadata, seal, warning count
    return found


def list_warnings(
    session: Session,
    *,
    institutions: Sequence[str] | None = None,
    institution: str | None = None,
    region_prefix: str | None = None,
    code: str | None = None,
    report_code: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Kept warnings, oldest first, filtered; `institutions` limits them to a region's labs."""
    query = select(ReportWarning).where(ReportWarning.id > after_id)
    if institutions is not None:
        query = query.where(ReportWarning.institution.in_(institutions))
    if institution is not None:
        query = query.where(ReportWarning.institution == institution)
    if region_prefix:
        query = query.where(ReportWarning.region.startswith(region_prefix))
    if code is not None:
        query = query.where(ReportWarning.code == code)
    if report_code is not None:
        query = query.where(ReportWarning.report_code == report_code)
    if since is not None:
        query = query.where(ReportWarning.created_at >= since)
    if until is not None:
        query = query.where(ReportWarning.created_at < until)
    rows = session.scalars(query.order_by(ReportWarning.id).limit(limit)).all()
    return [
        {
            "id": r.id,
            "report_code": r.report_code,
            "institution": r.institution,
            "region": r.region,
            "code": r.code,
            "record_id": r.record_id,
            "detail": r.detail,
            "report_record_id": r.report_record_id,
            "recorded_at": rfc3339(r.created_at),
        }
        for r in rows
    ]
