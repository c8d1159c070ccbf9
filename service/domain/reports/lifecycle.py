"""A report code's life after issuance: its metadata, its revocation, its state.

Each state change is an evidence record written in the caller's transaction next to the
`report_codes` row it explains:

- metadata: a `report` record (`event: "metadata"`), parents = the previous report
  record of the code, then the samples / test records / media the lab names;
- revocation: a `revocation` record, parent = the latest report record; plus a row in
  `chain_revocations` that the anchoring worker sends with the registry's `revoke`.

A code is `issued`, then `reported` (metadata recorded), and ends `revoked`,
`superseded` (revoked in favour of another code) or `voided` (its number voided).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import CHINA_TZ, rfc3339, utc_now
from service.domain import registry
from service.domain import warnings as report_warnings
from service.domain.ancestry import derived_from
from service.domain.codes import canonical_code, parse_code, revocation_subject
from service.domain.evidence import append_record, load_records
from service.domain.history import report_history
from service.domain.nonconforming import record_nonconforming
from service.domain.records import correction_of
from service.errors import Conflict, Forbidden, Invalid, JianzhengError, NotFound
from service.storage.models import ChainRevocation, Record, ReportCode
from service.storage.report_facts import refresh_facts

MAX_REASON_CHARS = 1000
#: Record types a report's metadata may name as parents.
REPORT_PARENT_TYPES = frozenset({"sample", "test_record", "media"})

STATUS_ISSUED = "issued"
STATUS_REPORTED = "reported"
STATUS_REVOKED = "revoked"
STATUS_SUPERSEDED = "superseded"
STATUS_VOIDED = "voided"
OPEN_STATUSES = (STATUS_ISSUED, STATUS_REPORTED)


def verify_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/v/{code}"


def not_yours(record_id: str) -> JianzhengError:
    """§5.1: a valid key acting on another institution's record is `forbidden` (403)."""
    return Forbidden("forbidden", f"record {record_id} belongs to another institution")


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise Invalid("invalid_reason", f"reason has 1 to {MAX_REASON_CHARS} chars")
    return reason


# --------------------------------------------------------------------------- one code


def code_institution(session: Session, code_text: str) -> str | None:
    """The institution a code was issued to (None for a code never issued; 404 for text
    that cannot be a code)."""
    row = session.get(ReportCode, canonical_code(code_text))
    return row.institution if row is not None else None


def load_own_code(session: Session, institution: str, code_text: str, *, lock: bool) -> ReportCode:
    """The code row, locked for update; 404 `unknown_code`, 403 if another institution's."""
    code = canonical_code(code_text)
    query = select(ReportCode).where(ReportCode.code == code)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound("unknown_code", f"no report code {code}")
    if row.institution != institution:
        raise Forbidden("forbidden", "this report code belongs to another institution")
    return row


def code_json(row: ReportCode, base_url: str) -> dict[str, Any]:
    return {
        "code": row.code,
        "printed": parse_code(row.code).printed,
        "verify_url": verify_url(base_url, row.code),
        "institution": row.institution,
        "year": row.year,
        "report_no": row.report_no,
        "status": row.status,
        "issued_at": rfc3339(row.issued_at),
        "sealed_at": rfc3339(row.sealed_at) if row.sealed_at else None,
        "project_record_id": row.project_record_id,
        "issue_record_id": row.issue_record_id,
        "report_record_id": row.report_record_id,
        "pdf_record_id": row.pdf_record_id,
        "revocation_record_id": row.revocation_record_id,
        "superseded_by": row.superseded_by,
    }


def china_today() -> date:
    """Today's date in China on the service clock (the moment of work)."""
    return utc_now().astimezone(CHINA_TZ).date()


def refuse_closed(row: ReportCode, action: str) -> None:
    if row.status == STATUS_VOIDED:
        raise Conflict("report_voided", f"report {row.code} was voided; cannot {action}")
    if row.status in (STATUS_REVOKED, STATUS_SUPERSEDED):
        raise Conflict("report_revoked", f"report {row.code} is revoked; cannot {action}")


def latest_report_record_id(row: ReportCode) -> str:
    """The newest `report` record of the code (signed PDF, metadata, or issuance)."""
    return row.pdf_record_id or row.report_record_id or row.issue_record_id


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class ReportMetadata:
    conclusion: str
    issued_on: date
    approver: str
    parents: Sequence[str]


def put_metadata(
    session: Session, *, institution: str, code_text: str, meta: ReportMetadata
) -> dict[str, Any]:
    row = load_own_code(session, institution, code_text, lock=True)
    refuse_closed(row, "change its metadata")
    if row.sealed_at is not None:
        raise Conflict(
            "report_sealed", f"report {row.code} is signed; revoke and supersede it instead"
        )
    if len(set(meta.parents)) != len(meta.parents):
        raise Invalid("duplicate_parent", "a record is named twice in parents")
    found = load_records(session, list(meta.parents))
    parents: list[Record] = []
    for pid in meta.parents:
        rec = found.get(pid)
        if rec is None:
            raise Invalid("unknown_parent", f"no record {pid}")
        if rec.institution != institution:
            raise not_yours(pid)
        if rec.type == "test_record" and (fixed := correction_of(session, pid)) is not None:
            raise Invalid(
                "test_record_corrected",
                f"test record {pid} was corrected by {fixed}; name the correction",
                corrected_by=fixed,
            )
        if rec.type not in REPORT_PARENT_TYPES:
            raise Invalid(
                "invalid_parent",
                f"parent {pid} is a {rec.type}; a report derives from samples, test records "
                "and media",
            )
        parents.append(rec)
    # media stand alone (no parents); samples and test records must come from the
    # project the code was issued for, or the page would show another project's chain
    from_project = derived_from(
        session, [p.id for p in parents if p.type != "media"], row.project_record_id
    )
    for parent in parents:
        if parent.type != "media" and parent.id not in from_project:
            raise Invalid(
                "project_mismatch",
                f"{parent.type} {parent.id} does not derive from project "
                f"{row.project_record_id}, for which this report code was issued",
            )
    if not any(p.type == "test_record" for p in parents):
        raise Invalid(
            "test_record_required",
            "a report derives from test data: name at least one test record in parents",
        )
    items = [
        str(json.loads(p.canonical).get("body", {}).get("test_item"))
        for p in parents
        if p.type == "test_record"
    ]
    registry.check_qualification(session, institution, items, china_today())
    approver_entry = registry.check_approver(session, institution, meta.approver, items)
    previous = session.get(Record, latest_report_record_id(row))
    assert previous is not None
    body = {
        "event": "metadata",
        "code": row.code,
        "report_no": row.report_no,
        "conclusion": meta.conclusion,
        "issued_on": meta.issued_on.isoformat(),
        "approver": meta.approver,
        # docs/registry.md: the agency's registration of the approver, once there is one
        **({"approver_registered_by": registry.verified_by(approver_entry)}
           if approver_entry is not None else {}),
        # §7.1: every record of the cited samples, written by the platform, not the lab
        "history": report_history(session, parents),
    }
    record = append_record(
        session,
        type="report",
        institution=institution,
        body=body,
        parents=[previous, *parents],
        code=row.code,
    )
    row.report_record_id = record.id
    row.status = STATUS_REPORTED
    nonconforming = False
    if meta.conclusion == "fail":
        record_nonconforming(
            session,
            record,
            institution,
            row.code,
            {k: body[k] for k in ("report_no", "conclusion", "issued_on", "approver")},
        )
        nonconforming = True
    session.flush()
    warned = report_warnings.refresh(session, row.code, institution, record.id)
    return {
        "code": row.code,
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "status": row.status,
        "nonconforming": nonconforming,
        "evidence_complete": warned.evidence_complete,
        "warnings": warned.as_json(),
    }


# --------------------------------------------------------------------------- revocation


def revoke_report(
    session: Session,
    *,
    institution: str,
    code_text: str,
    reason: str,
    superseded_by: str | None,
) -> dict[str, Any]:
    row = load_own_code(session, institution, code_text, lock=True)
    refuse_closed(row, "revoke it again")
    reason = check_reason(reason)
    successor: str | None = None
    if superseded_by is not None:
        successor = canonical_code(superseded_by)
        other = session.get(ReportCode, successor)
        if successor == row.code or other is None or other.institution != institution:
            raise Invalid(
                "invalid_superseded_by", "superseded_by must be another code of yours"
            )
        if other.status not in OPEN_STATUSES:
            raise Invalid(
                "invalid_superseded_by", f"the successor {successor} is {other.status}"
            )
    previous = session.get(Record, latest_report_record_id(row))
    assert previous is not None
    record = append_record(
        session,
        type="revocation",
        institution=institution,
        body={
            "code": row.code,
            "report_no": row.report_no,
            "reason": reason,
            "superseded_by": successor,
        },
        parents=[previous],
        code=row.code,
    )
    subject = revocation_subject(row.code).hex()
    session.add(
        ChainRevocation(
            subject=subject,
            reason=record.leaf_hash,
            code=row.code,
            status="pending",
            attempts=0,
            created_at=utc_now(),
        )
    )
    row.status = STATUS_SUPERSEDED if successor else STATUS_REVOKED
    row.revocation_record_id = record.id
    row.superseded_by = successor
    session.flush()
    refresh_facts(session, [row.code])
    return {
        "code": row.code,
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "status": row.status,
        "superseded_by": successor,
        "revocation_subject": subject,
    }
