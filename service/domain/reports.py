"""Report codes and numbering: issuance, metadata, revocation, voids and the numbering audit.

Every state change is an evidence record written in the caller's transaction (with
`append_record`, or for issuance the same record from `encode_record` inserted by one
Core statement), next to the row of `report_codes` / `numbering_voids` it explains:

- issuance: a `report` record (body `event: "code_issued"`), parent = the project;
- metadata: a `report` record (`event: "metadata"`), parents = the previous report
  record of the code, then the samples / test records / media the lab names;
- revocation: a `revocation` record, parent = the latest report record; plus a row in
  `chain_revocations` that the anchoring worker sends with the registry's `revoke`;
- void: a `numbering_void` record, parent = the latest report record if the number had
  a code.

Report numbers (报告编号) are the lab's own strings, unique per institution and year.
Their *sequence number* is the last run of ASCII digits in the string; the text before
and after it names the *series* (e.g. `BG-2026-000123` is number 123 of series
`BG-2026-…`). The numbering audit finds, per series, every number from `start`
(default 1) to the highest one seen that was neither issued nor voided.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, exists, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import as_utc, china_year, rfc3339, utc_now
from service.domain.codes import canonical_code, generate_code, revocation_subject
from service.domain.evidence import (
    EncodedRecord,
    append_record,
    encode_record,
    load_records,
)
from service.domain.records import correction_of
from service.errors import Conflict, Forbidden, Invalid, JianzhengError, NotFound
from service.storage.models import (
    ChainRevocation,
    Institution,
    NumberingVoid,
    Outbox,
    Record,
    RecordParent,
    ReportCode,
)

#: China Standard Time: report numbers run per calendar year in local time.
MAX_REPORT_NO_CHARS = 64
MAX_REASON_CHARS = 1000
MIN_YEAR = 2000
#: A code issued this long ago without a signed PDF counts as unfinished (R4: 24 h).
DEFAULT_UNFINISHED_AFTER_S = 24 * 3600
#: At most this many missing numbers are listed per series (the count is always exact).
MAX_MISSING_LISTED = 10_000
#: Record types a report's metadata may name as parents.
REPORT_PARENT_TYPES = frozenset({"sample", "test_record", "media"})

STATUS_ISSUED = "issued"
STATUS_REPORTED = "reported"
STATUS_REVOKED = "revoked"
STATUS_SUPERSEDED = "superseded"
STATUS_VOIDED = "voided"
OPEN_STATUSES = (STATUS_ISSUED, STATUS_REPORTED)

_SEQ_RE = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$", re.DOTALL)
_REGION_CACHE: dict[str, str] = {}
_REGION_LOCK = threading.Lock()


def verify_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/v/{code}"


def _region_of(session: Session, institution: str) -> str:
    region = _REGION_CACHE.get(institution)
    if region is None:
        inst = session.get(Institution, institution)
        if inst is None:
            raise Forbidden("forbidden", "the key's institution is not registered")
        region = inst.region
        with _REGION_LOCK:
            _REGION_CACHE[institution] = region
    return region


def check_report_no(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_REPORT_NO_CHARS or any(ord(c) < 32 for c in value):
        raise Invalid(
            "invalid_report_no", f"report_no has 1 to {MAX_REPORT_NO_CHARS} printable chars"
        )
    return value


def _own_record(session: Session, institution: str, record_id: str, what: str) -> Record:
    record = session.get(Record, record_id) if len(record_id) <= 26 else None
    if record is None or record.institution != institution:
        # Another institution's record is answered like a missing one: no existence leak.
        raise Invalid("unknown_parent", f"{what} {record_id} is not a record of yours")
    return record


# --------------------------------------------------------------------------- issuance
#
# Issuance is the hot path of the lab API (one call per report), so it is written in
# Core SQL, not the ORM. On PostgreSQL one statement (`_ISSUE_PG`) inserts the code, its
# `report` evidence record, the parent link and the outbox row, guarded by the voids
# check, the project check and the unique keys of `report_codes` (ON CONFLICT DO NOTHING:
# a concurrent request for the same number makes it insert nothing). The API's fast path
# prefixes the signed request's nonce insert to the same statement and runs it in
# autocommit: the whole signed issuance is then one round trip and one commit.
# Anything that did not insert (number taken, stale project cache, code collision) is
# settled by `issue_code`, whose answers (409, 422) are authoritative.

#: Attempts at drawing a code before giving up (a collision has p ~ 1e-15 per pair).
MAX_ISSUE_ATTEMPTS = 3
#: Projects whose immutable facts (institution, type, leaf hash) are kept per process.
MAX_CACHED_PROJECTS = 10_000


@dataclass(frozen=True)
class ProjectRef:
    id: str
    institution: str
    type: str
    leaf_hash: str


_PROJECTS: dict[str, ProjectRef] = {}


def cached_project(institution: str, project_id: str) -> ProjectRef | None:
    """The project if this process knows it as `institution`'s project (no database)."""
    ref = _PROJECTS.get(project_id)
    if ref is None or ref.institution != institution or ref.type != "project":
        return None
    return ref


def cached_region(institution: str) -> str | None:
    return _REGION_CACHE.get(institution)


def _project(session: Session, institution: str, project_id: str) -> ProjectRef:
    """`institution`'s project record (422 `unknown_parent` otherwise); cached when valid."""
    ref = _PROJECTS.get(project_id)
    if ref is None and len(project_id) <= 26:
        row = session.execute(
            select(Record.institution, Record.type, Record.leaf_hash).where(Record.id == project_id)
        ).one_or_none()
        if row is not None:
            ref = ProjectRef(project_id, row[0], row[1], row[2])
            if len(_PROJECTS) >= MAX_CACHED_PROJECTS:
                _PROJECTS.clear()
            _PROJECTS[project_id] = ref  # records never change: facts safe to keep
    if ref is None:
        raise Invalid("unknown_parent", f"no record {project_id}")
    if ref.institution != institution:
        raise _not_yours(project_id)
    if ref.type != "project":
        raise Invalid("unknown_parent", f"record {project_id} is not a project")
    return ref


@dataclass(frozen=True)
class IssuePlan:
    """A code drawn and its `report` record encoded, ready to be inserted."""

    institution: str
    year: int
    report_no: str
    code: str
    project: ProjectRef
    record: EncodedRecord

    def params(self) -> dict[str, Any]:
        return {
            "institution": self.institution,
            "year": self.year,
            "report_no": self.report_no,
            "code": self.code,
            "project_id": self.project.id,
            "project_leaf": self.project.leaf_hash,
            "record_id": self.record.id,
            "created_at": self.record.created_at,
            "canonical": self.record.canonical,
            "leaf_hash": self.record.leaf_hash,
            "enqueued_at": time.time(),
        }

    def answer(self, base_url: str) -> dict[str, Any]:
        return {
            "code": self.code,
            "verify_url": verify_url(base_url, self.code),
            "record_id": self.record.id,
            "leaf_hash": self.record.leaf_hash,
            "report_no": self.report_no,
            "year": self.year,
        }


def plan_issue(
    *, institution: str, report_no: str, project: ProjectRef, region: str, now: datetime
) -> IssuePlan:
    """Draw a code and encode its `report` record (pure: no database)."""
    year = china_year(now)
    code = generate_code(region, year).canonical
    record = encode_record(
        type="report",
        institution=institution,
        body={
            "event": "code_issued",
            "code": code,
            "report_no": report_no,
            "year": year,
            "region": region,
        },
        parent_leaf_hashes=[project.leaf_hash],
        created_at=now,
    )
    return IssuePlan(institution, year, report_no, code, project, record)


_ISSUE_PG_BODY = """
 project AS MATERIALIZED (
  SELECT institution = %(institution)s AND type = 'project' AND leaf_hash = %(project_leaf)s
   AS ok FROM records WHERE id = %(project_id)s
 ), code AS (
  INSERT INTO report_codes (code, institution, year, report_no, project_record_id,
   issued_at, issue_record_id, status)
  SELECT %(code)s, %(institution)s, %(year)s, %(report_no)s, %(project_id)s,
   %(created_at)s, %(record_id)s, 'issued'
  WHERE {guard} EXISTS (SELECT 1 FROM project WHERE ok)
   AND NOT EXISTS (SELECT 1 FROM numbering_voids WHERE institution = %(institution)s
    AND year = %(year)s AND report_no = %(report_no)s)
  ON CONFLICT DO NOTHING
  RETURNING 1
 ), record AS (
  INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash, code)
  SELECT %(record_id)s, 'report', %(institution)s, %(created_at)s, %(canonical)s,
   %(leaf_hash)s, %(code)s
  WHERE EXISTS (SELECT 1 FROM code)
  RETURNING 1
 ), parent AS (
  INSERT INTO record_parents (child_id, parent_id, position)
  SELECT %(record_id)s, %(project_id)s, 0 WHERE EXISTS (SELECT 1 FROM record)
 ), outbox AS (
  INSERT INTO outbox (record_id, leaf_hash, enqueued_at)
  SELECT %(record_id)s, %(leaf_hash)s, %(enqueued_at)s WHERE EXISTS (SELECT 1 FROM record)
 )
"""
_PARAM_TYPES = {
    "institution": "varchar",
    "year": "integer",
    "report_no": "varchar",
    "code": "varchar",
    "project_id": "varchar",
    "project_leaf": "varchar",
    "record_id": "varchar",
    "created_at": "timestamptz",
    "canonical": "bytea",
    "leaf_hash": "varchar",
    "enqueued_at": "double precision",
    "key_id": "varchar",
    "nonce": "varchar",
    "seen_at": "bigint",
}


def _typed(sql: str) -> str:
    """Every `%(name)s` with an explicit type (one type per parameter, for PostgreSQL)."""
    for name, pg_type in _PARAM_TYPES.items():
        sql = sql.replace(f"%({name})s", f"CAST(%({name})s AS {pg_type})")
    return sql


#: Issuance in the caller's transaction: one row, `inserted`.
_ISSUE_PG = _typed(
    "WITH" + _ISSUE_PG_BODY.format(guard="") + "SELECT EXISTS (SELECT 1 FROM record)"
)
#: The signed fast path: the nonce (if the key is active and the nonce new) and the
#: issuance in one autocommit statement; one row, `nonce_stored`, `inserted`.
ISSUE_SIGNED_PG = _typed(
    "WITH nonce AS (\n"
    "  INSERT INTO auth_nonces (key_id, nonce, seen_at)\n"
    "  SELECT %(key_id)s, %(nonce)s, %(seen_at)s\n"
    "  WHERE EXISTS (SELECT 1 FROM api_keys WHERE key_id = %(key_id)s AND revoked_at IS NULL)\n"
    "  ON CONFLICT DO NOTHING\n"
    "  RETURNING 1\n"
    " ),"
    + _ISSUE_PG_BODY.format(guard="EXISTS (SELECT 1 FROM nonce) AND")
    + "SELECT EXISTS (SELECT 1 FROM nonce), EXISTS (SELECT 1 FROM record)"
)


def _insert_plan(session: Session, plan: IssuePlan) -> bool:
    """Insert the plan in the session's transaction; False if nothing was inserted."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        pg = conn.connection.driver_connection
        assert pg is not None
        row = pg.execute(_ISSUE_PG, plan.params()).fetchone()
        return bool(row and row[0])
    # Other backends (SQLite): the same rows with plain inserts; the unique keys still
    # decide a race (IntegrityError -> rolled back by the caller's handling below).
    p = plan.params()
    project_ok = session.execute(
        select(Record.id).where(
            Record.id == p["project_id"],
            Record.institution == p["institution"],
            Record.type == "project",
            Record.leaf_hash == p["project_leaf"],
        )
    ).first()
    if project_ok is None or _number_taken(session, plan.institution, plan.year, plan.report_no):
        return False
    if session.scalar(select(ReportCode.code).where(ReportCode.code == plan.code)) is not None:
        return False
    session.execute(
        insert(Record).values(
            id=plan.record.id,
            type="report",
            institution=plan.institution,
            created_at=plan.record.created_at,
            canonical=plan.record.canonical,
            leaf_hash=plan.record.leaf_hash,
            code=plan.code,
        )
    )
    session.execute(
        insert(RecordParent).values(child_id=plan.record.id, parent_id=plan.project.id, position=0)
    )
    session.execute(
        insert(ReportCode).values(
            code=plan.code,
            institution=plan.institution,
            year=plan.year,
            report_no=plan.report_no,
            project_record_id=plan.project.id,
            issued_at=plan.record.created_at,
            issue_record_id=plan.record.id,
            status=STATUS_ISSUED,
        )
    )
    session.execute(
        insert(Outbox).values(
            record_id=plan.record.id, leaf_hash=plan.record.leaf_hash, enqueued_at=p["enqueued_at"]
        )
    )
    return True


def _number_taken(session: Session, institution: str, year: int, report_no: str) -> bool:
    """Is the number registered (issued or voided) for this institution and year?"""
    return bool(
        session.scalar(
            select(
                exists().where(
                    ReportCode.institution == institution,
                    ReportCode.year == year,
                    ReportCode.report_no == report_no,
                )
                | exists().where(
                    NumberingVoid.institution == institution,
                    NumberingVoid.year == year,
                    NumberingVoid.report_no == report_no,
                )
            )
        )
    )


def issue_code(
    session: Session,
    *,
    institution: str,
    report_no: str,
    project_id: str,
    base_url: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Issue a code for (institution, year, report_no); 409 `duplicate_report_no` if taken.

    Writes in the session's transaction (the caller commits).
    """
    report_no = check_report_no(report_no)
    now = now or utc_now()
    for _ in range(MAX_ISSUE_ATTEMPTS):
        project = _project(session, institution, project_id)
        region = _region_of(session, institution)
        plan = plan_issue(
            institution=institution, report_no=report_no, project=project, region=region, now=now
        )
        try:
            inserted = _insert_plan(session, plan)
        except IntegrityError:  # a concurrent request registered the same number first
            session.rollback()
            raise _duplicate(report_no, plan.year) from None
        if inserted:
            return plan.answer(base_url)
        if _number_taken(session, institution, plan.year, report_no):
            raise _duplicate(report_no, plan.year)
        # Not taken, yet nothing inserted: the drawn code collided, or the cached project
        # facts are stale. Forget them and draw again.
        _PROJECTS.pop(project_id, None)
    raise RuntimeError("could not issue a report code (repeated collisions)")


def plan_signed_issue(
    *,
    key_id: str,
    nonce: str,
    seen_at: int,
    institution: str,
    report_no: str,
    project: ProjectRef,
    region: str,
) -> tuple[IssuePlan, dict[str, Any]]:
    """The plan and the parameters of `ISSUE_SIGNED_PG` for a signed issuance."""
    plan = plan_issue(
        institution=institution, report_no=report_no, project=project, region=region, now=utc_now()
    )
    params = plan.params()
    params.update(key_id=key_id, nonce=nonce, seen_at=seen_at)
    return plan, params


def signed_issue_outcome(row: Sequence[Any] | None) -> tuple[bool, bool]:
    """(nonce stored, inserted) from the row `ISSUE_SIGNED_PG` returned."""
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def issue_code_signed(
    engine: Engine,
    *,
    key_id: str,
    nonce: str,
    seen_at: int,
    institution: str,
    report_no: str,
    project: ProjectRef,
    region: str,
    base_url: str,
) -> tuple[bool, dict[str, Any] | None]:
    """The fast path of a signed issuance on PostgreSQL: store the nonce and issue, in one
    autocommit statement. Returns (nonce_stored, answer); answer None when nothing was
    inserted (then run `issue_code` for the authoritative answer; the nonce is spent).
    """
    plan, params = plan_signed_issue(
        key_id=key_id,
        nonce=nonce,
        seen_at=seen_at,
        institution=institution,
        report_no=report_no,
        project=project,
        region=region,
    )
    fairy = engine.raw_connection()
    try:
        pg = fairy.driver_connection
        assert pg is not None
        pg.autocommit = True
        row = pg.execute(ISSUE_SIGNED_PG, params).fetchone()
        pg.autocommit = False
    except BaseException:
        fairy.invalidate()  # never hand a connection in an unknown state back to the pool
        raise
    finally:
        fairy.close()
    stored, inserted = signed_issue_outcome(row)
    return stored, (plan.answer(base_url) if inserted else None)


_ANCESTOR_SQL = text(
    "WITH RECURSIVE anc(id) AS ("
    " SELECT parent_id FROM record_parents WHERE child_id IN :ids"
    " UNION SELECT rp.parent_id FROM record_parents rp JOIN anc ON rp.child_id = anc.id"
    ") SELECT 1 FROM anc WHERE id = :project LIMIT 1"
).bindparams(bindparam("ids", expanding=True))


def _derives_from(session: Session, record_id: str, project_id: str) -> bool:
    """Does the record lead back, parent by parent, to the project?"""
    found = session.execute(_ANCESTOR_SQL, {"ids": [record_id], "project": project_id}).first()
    return found is not None


def _not_yours(record_id: str) -> JianzhengError:
    """§5.1: a valid key acting on another institution's record is `forbidden` (403)."""
    return Forbidden("forbidden", f"record {record_id} belongs to another institution")


def _duplicate(report_no: str, year: int) -> JianzhengError:
    return Conflict(
        "duplicate_report_no",
        f"report number {report_no!r} is already registered (or voided) for {year}",
    )


def _voided(session: Session, institution: str, year: int, report_no: str) -> bool:
    return (
        session.scalar(
            select(NumberingVoid.id).where(
                NumberingVoid.institution == institution,
                NumberingVoid.year == year,
                NumberingVoid.report_no == report_no,
            )
        )
        is not None
    )


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
    from service.domain.codes import parse_code

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


def _refuse_closed(row: ReportCode, action: str) -> None:
    if row.status == STATUS_VOIDED:
        raise Conflict("report_voided", f"report {row.code} was voided; cannot {action}")
    if row.status in (STATUS_REVOKED, STATUS_SUPERSEDED):
        raise Conflict("report_revoked", f"report {row.code} is revoked; cannot {action}")


def _latest_report_record_id(row: ReportCode) -> str:
    return row.pdf_record_id or row.report_record_id or row.issue_record_id


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
    _refuse_closed(row, "change its metadata")
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
            raise _not_yours(pid)
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
    for parent in parents:
        # media stand alone (no parents); samples and test records must come from the
        # project the code was issued for, or the page would show another project's chain
        if parent.type != "media" and not _derives_from(
            session, parent.id, row.project_record_id
        ):
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
    previous = session.get(Record, _latest_report_record_id(row))
    assert previous is not None
    body = {
        "event": "metadata",
        "code": row.code,
        "report_no": row.report_no,
        "conclusion": meta.conclusion,
        "issued_on": meta.issued_on.isoformat(),
        "approver": meta.approver,
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
        from service.domain.nonconforming import record_nonconforming

        record_nonconforming(
            session,
            record,
            institution,
            row.code,
            {k: body[k] for k in ("report_no", "conclusion", "issued_on", "approver")},
        )
        nonconforming = True
    session.flush()
    return {
        "code": row.code,
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "status": row.status,
        "nonconforming": nonconforming,
    }


def revoke_report(
    session: Session,
    *,
    institution: str,
    code_text: str,
    reason: str,
    superseded_by: str | None,
) -> dict[str, Any]:
    row = load_own_code(session, institution, code_text, lock=True)
    _refuse_closed(row, "revoke it again")
    reason = _check_reason(reason)
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
    previous = session.get(Record, _latest_report_record_id(row))
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
    return {
        "code": row.code,
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "status": row.status,
        "superseded_by": successor,
        "revocation_subject": subject,
    }


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise Invalid("invalid_reason", f"reason has 1 to {MAX_REASON_CHARS} chars")
    return reason


# --------------------------------------------------------------------------- voids


def void_number(
    session: Session,
    *,
    institution: str,
    report_no: str,
    reason: str,
    year: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Void a report number (issued or not) with a reason: a `numbering_void` record."""
    report_no = check_report_no(report_no)
    reason = _check_reason(reason)
    now = now or utc_now()
    current = china_year(now)
    year = current if year is None else year
    if not MIN_YEAR <= year <= current:
        raise Invalid("invalid_year", f"year must be between {MIN_YEAR} and {current}")
    _region_of(session, institution)
    if _voided(session, institution, year, report_no):
        raise Conflict("already_voided", f"report number {report_no!r} is voided")
    row = session.scalars(
        select(ReportCode)
        .where(
            ReportCode.institution == institution,
            ReportCode.year == year,
            ReportCode.report_no == report_no,
        )
        .with_for_update()
    ).first()
    parents: list[Record] = []
    if row is not None:
        _refuse_closed(row, "void its number")
        if row.sealed_at is not None:
            raise Conflict(
                "report_sealed", f"report {row.code} is signed; revoke it instead"
            )
        previous = session.get(Record, _latest_report_record_id(row))
        assert previous is not None
        parents.append(previous)
    record = append_record(
        session,
        type="numbering_void",
        institution=institution,
        body={
            "year": year,
            "report_no": report_no,
            "reason": reason,
            "code": row.code if row else None,
        },
        parents=parents,
        code=row.code if row else None,
        created_at=now,
    )
    session.add(
        NumberingVoid(
            institution=institution,
            year=year,
            report_no=report_no,
            code=row.code if row else None,
            reason=reason,
            record_id=record.id,
            voided_at=now,
        )
    )
    if row is not None:
        row.status = STATUS_VOIDED
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            "already_voided", f"report number {report_no!r} is voided"
        ) from None
    return {
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "year": year,
        "report_no": report_no,
        "code": row.code if row else None,
    }


# --------------------------------------------------------------------------- numbering audit


@dataclass(frozen=True)
class SeqNo:
    prefix: str
    number: int
    digits: str
    suffix: str


def sequence_of(report_no: str) -> SeqNo | None:
    """Split a report number at its last run of digits; None if it has no digits."""
    m = _SEQ_RE.match(report_no)
    if m is None:
        return None
    return SeqNo(m.group(1), int(m.group(2)), m.group(2), m.group(3))


def _series_name(prefix: str, suffix: str) -> str:
    return f"{prefix}{{n}}{suffix}"


def numbering_audit(
    session: Session,
    *,
    institution: str,
    year: int,
    unfinished_after_s: int = DEFAULT_UNFINISHED_AFTER_S,
    start: int = 1,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Issued, voided, unfinished and missing report numbers of one institution and year."""
    now = now or utc_now()
    codes = session.scalars(
        select(ReportCode)
        .where(ReportCode.institution == institution, ReportCode.year == year)
        .order_by(ReportCode.issued_at, ReportCode.code)
    ).all()
    voids = session.scalars(
        select(NumberingVoid)
        .where(NumberingVoid.institution == institution, NumberingVoid.year == year)
        .order_by(NumberingVoid.voided_at, NumberingVoid.id)
    ).all()
    cutoff = now - timedelta(seconds=unfinished_after_s)
    issued = [
        {
            "report_no": c.report_no,
            "code": c.code,
            "status": c.status,
            "issued_at": rfc3339(c.issued_at),
            "sealed_at": rfc3339(c.sealed_at) if c.sealed_at else None,
        }
        for c in codes
    ]
    voided = [
        {
            "report_no": v.report_no,
            "code": v.code,
            "reason": v.reason,
            "voided_at": rfc3339(v.voided_at),
            "record_id": v.record_id,
        }
        for v in voids
    ]
    unfinished = [
        {
            "report_no": c.report_no,
            "code": c.code,
            "status": c.status,
            "issued_at": rfc3339(c.issued_at),
            "age_s": int((now - as_utc(c.issued_at)).total_seconds()),
        }
        for c in codes
        if c.status in OPEN_STATUSES and c.sealed_at is None and as_utc(c.issued_at) <= cutoff
    ]
    series, missing, unsequenced = _gaps(
        [c.report_no for c in codes] + [v.report_no for v in voids], start
    )
    return {
        "institution": institution,
        "year": year,
        "generated_at": rfc3339(now),
        "unfinished_after_s": unfinished_after_s,
        "start": start,
        "issued": issued,
        "voided": voided,
        "unfinished": unfinished,
        "missing": missing,
        "series": series,
        "unsequenced": unsequenced,
        "counts": {
            "issued": len(issued),
            "voided": len(voided),
            "unfinished": len(unfinished),
            "missing": sum(s["missing_count"] for s in series),
        },
    }


def _gaps(
    report_nos: Iterable[str], start: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    groups: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    widths: dict[tuple[str, str], int] = {}
    unsequenced: list[str] = []
    for report_no in report_nos:
        seq = sequence_of(report_no)
        if seq is None:
            unsequenced.append(report_no)
            continue
        key = (seq.prefix, seq.suffix)
        groups[key][seq.number] = report_no
        widths[key] = min(widths.get(key, len(seq.digits)), len(seq.digits))
    series: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for key in sorted(groups):
        prefix, suffix = key
        numbers = groups[key]
        last = max(numbers)
        width = widths[key]
        present = sum(1 for n in numbers if start <= n <= last)
        gap_count = max(0, last - start + 1 - present)
        # Walk only as far as needed: at most MAX_MISSING_LISTED gaps + the numbers present.
        listed = 0
        n = start
        while n <= last and listed < MAX_MISSING_LISTED:
            if n not in numbers:
                listed += 1
                missing.append(
                    {
                        "series": _series_name(prefix, suffix),
                        "number": n,
                        "report_no": f"{prefix}{n:0{width}d}{suffix}",
                    }
                )
            n += 1
        series.append(
            {
                "series": _series_name(prefix, suffix),
                "first": min(numbers),
                "last": last,
                "count": len(numbers),
                "missing_count": gap_count,
                "missing_truncated": gap_count > MAX_MISSING_LISTED,
            }
        )
    return series, missing, sorted(unsequenced)
