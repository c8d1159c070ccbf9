"""Issuing report codes (INTERFACE §4): one code per (institution, year, report number).

Issuance writes the code's row in `report_codes` and its first evidence record, a
`report` record (body `event: "code_issued"`) whose parent is the project, in the
caller's transaction. Report numbers (报告编号) are the lab's own strings, unique per
institution and year (a voided number stays taken: service/domain/reports/numbering.py).

Issuance is the hot path of the lab API (one call per report), so it is written in Core
SQL, not the ORM. On PostgreSQL one statement (`_ISSUE_PG`) inserts the code, its
`report` evidence record, the parent link and the outbox row, guarded by the voids
check, the project check and the unique keys of `report_codes` (ON CONFLICT DO NOTHING:
a concurrent request for the same number makes it insert nothing). The API's fast path
prefixes the signed request's nonce insert to the same statement and runs it in
autocommit: the whole signed issuance is then one round trip and one commit. Anything
that did not insert (number taken, stale project cache, code collision) is settled by
`issue_code`, whose answers (409, 422) are authoritative.

What the fast path needs to know without the database (a project's immutable facts, an
institution's region) is kept in an `IssuanceCache`, one per process, owned by the
service state (`ServiceState.issuance_cache`) and passed in by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import china_year, utc_now
from service.domain import registry
from service.domain.codes import generate_code
from service.domain.evidence import EncodedRecord, encode_record
from service.domain.reports.lifecycle import STATUS_ISSUED, china_today, not_yours, verify_url
from service.errors import Conflict, Forbidden, Invalid, JianzhengError
from service.storage import loghash
from service.storage.db import AsyncPgPool
from service.storage.models import (
    Institution,
    NumberingVoid,
    Outbox,
    Record,
    RecordParent,
    ReportCode,
)
from service.storage.report_facts import refresh_facts
from service.storage.rollups import split_number, take_number
from verifier.merkle import DEFAULT_ALG, HashAlg

_log = logging.getLogger(__name__)

MAX_REPORT_NO_CHARS = 64
#: Attempts at drawing a code before giving up (a collision has p ~ 1e-15 per pair).
MAX_ISSUE_ATTEMPTS = 3
#: Projects whose immutable facts (institution, type, leaf hash) are kept per process.
MAX_CACHED_PROJECTS = 10_000
#: At most this many test items in a code request (`test_items`, docs/registry.md).
MAX_CODE_TEST_ITEMS = 50
#: A test item a code request names (检测项目/参数, as test records name `test_item`).
TestItemName = registry.ItemName


def check_report_no(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_REPORT_NO_CHARS or any(ord(c) < 32 for c in value):
        raise Invalid(
            "invalid_report_no", f"report_no has 1 to {MAX_REPORT_NO_CHARS} printable chars"
        )
    return value


# --------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class ProjectRef:
    id: str
    institution: str
    type: str
    leaf_hash: str


class IssuanceCache:
    """Facts issuance keeps per process so the fast path needs no database read: each
    project record's institution, type and leaf hash (records never change) and each
    institution's region (fixed at registration).

    Reads are plain dict look-ups, safe from any thread; writes take the lock. At most
    `max_projects` projects are kept (then the project facts start over).
    """

    def __init__(self, max_projects: int = MAX_CACHED_PROJECTS) -> None:
        self.max_projects = max_projects
        self._projects: dict[str, ProjectRef] = {}
        self._regions: dict[str, str] = {}
        self._lock = threading.Lock()

    def get_project(self, project_id: str) -> ProjectRef | None:
        """The facts of record `project_id`, whoever's and whatever its type."""
        return self._projects.get(project_id)

    def project(self, institution: str, project_id: str) -> ProjectRef | None:
        """The project if this process knows it as `institution`'s project."""
        ref = self._projects.get(project_id)
        if ref is None or ref.institution != institution or ref.type != "project":
            return None
        return ref

    def region(self, institution: str) -> str | None:
        return self._regions.get(institution)

    def known(self, institution: str, project_id: str) -> tuple[ProjectRef, str] | None:
        """`institution`'s project and region when both are known, else None."""
        project = self.project(institution, project_id)
        region = self.region(institution)
        if project is None or region is None:
            return None
        return project, region

    def put_project(self, ref: ProjectRef) -> None:
        with self._lock:
            if len(self._projects) >= self.max_projects:
                self._projects.clear()
            self._projects[ref.id] = ref

    def put_region(self, institution: str, region: str) -> None:
        with self._lock:
            self._regions[institution] = region

    def forget_project(self, project_id: str) -> None:
        with self._lock:
            self._projects.pop(project_id, None)


def institution_region(session: Session, institution: str) -> str:
    """The institution's region code; 403 when the institution is not registered."""
    inst = session.get(Institution, institution)
    if inst is None:
        raise Forbidden("forbidden", "the key's institution is not registered")
    return inst.region


def _region_of(session: Session, cache: IssuanceCache, institution: str) -> str:
    region = cache.region(institution)
    if region is None:
        region = institution_region(session, institution)
        cache.put_region(institution, region)
    return region


def _project(
    session: Session, cache: IssuanceCache, institution: str, project_id: str
) -> ProjectRef:
    """`institution`'s project record (422 `unknown_parent` otherwise); cached when valid."""
    ref = cache.get_project(project_id)
    if ref is None and len(project_id) <= 26:
        row = session.execute(
            select(Record.institution, Record.type, Record.leaf_hash).where(Record.id == project_id)
        ).one_or_none()
        if row is not None:
            ref = ProjectRef(project_id, row[0], row[1], row[2])
            cache.put_project(ref)  # records never change: facts safe to keep
    if ref is None:
        raise Invalid("unknown_parent", f"no record {project_id}")
    if ref.institution != institution:
        raise not_yours(project_id)
    if ref.type != "project":
        raise Invalid("unknown_parent", f"record {project_id} is not a project")
    return ref


# --------------------------------------------------------------------------- issuance


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
    *,
    institution: str,
    report_no: str,
    project: ProjectRef,
    region: str,
    now: datetime,
    alg: HashAlg = DEFAULT_ALG,
) -> IssuePlan:
    """Draw a code and encode its `report` record with the log hash `alg` (pure: no
    database)."""
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
            "history": {},  # §7.1: the code-issued stage cites no sample
        },
        parent_leaf_hashes=[project.leaf_hash],
        created_at=now,
        alg=alg,
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
 ), fact AS (
  INSERT INTO report_facts (code, institution, region, report_no, year, status, issued_at,
   issued_on, sealed, revoked, conclusion, project_record_id, project_name, test_items,
   warning_count)
  SELECT %(code)s, %(institution)s, i.region, %(report_no)s, %(year)s, 'issued',
   %(created_at)s, (%(created_at)s AT TIME ZONE 'Asia/Shanghai')::date, false, false, NULL,
   %(project_id)s, COALESCE((SELECT CASE WHEN jsonb_typeof(b -> 'name') = 'string'
    THEN b ->> 'name' END FROM (SELECT convert_from(canonical, 'UTF8')::jsonb -> 'body' AS b
    FROM records WHERE id = %(project_id)s) AS p), ''), '', 0
  FROM institutions i WHERE i.uscc = %(institution)s AND EXISTS (SELECT 1 FROM record)
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


#: Columns of one signed issuance in `ISSUE_SIGNED_BATCH_PG`, each passed as an array.
_BATCH_COLUMNS = (
    ("key_id", "varchar"), ("nonce", "varchar"), ("seen_at", "bigint"),
    ("institution", "varchar"), ("year", "integer"), ("report_no", "varchar"),
    ("code", "varchar"), ("project_id", "varchar"), ("project_leaf", "varchar"),
    ("record_id", "varchar"), ("created_at", "timestamptz"), ("canonical", "bytea"),
    ("leaf_hash", "varchar"), ("enqueued_at", "double precision"), ("lock_order", "integer"),
)
#: Several signed issuances in one autocommit statement (one commit, one WAL flush): the
#: same rows and the same guards per issuance as `ISSUE_SIGNED_PG` (key active, nonce new,
#: project this lab's, number neither issued nor voided), one row per issuance in input
#: order: `nonce_stored`, `inserted`. The codes and their facts go in `lock_order`
#: (institution, year, number series), so that the numbering and count triggers lock the
#: rollup rows they update in one global order (no deadlock between concurrent batches).
#: The caller never puts two issuances with the same (key, nonce) or the same code in one
#: batch.
ISSUE_SIGNED_BATCH_PG = (
    "WITH input AS MATERIALIZED (\n"
    "  SELECT * FROM unnest("
    + ", ".join(f"CAST(%({name})s AS {pg_type}[])" for name, pg_type in _BATCH_COLUMNS)
    + ")\n  WITH ORDINALITY AS t ("
    + ", ".join(name for name, _ in _BATCH_COLUMNS)
    + ", i)\n"
    """ ), nonce AS (
  INSERT INTO auth_nonces (key_id, nonce, seen_at)
  SELECT t.key_id, t.nonce, t.seen_at FROM input t
  WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.key_id = t.key_id AND k.revoked_at IS NULL)
  ORDER BY t.i
  ON CONFLICT DO NOTHING
  RETURNING key_id, nonce
 ), code AS (
  INSERT INTO report_codes (code, institution, year, report_no, project_record_id,
   issued_at, issue_record_id, status)
  SELECT t.code, t.institution, t.year, t.report_no, t.project_id, t.created_at,
   t.record_id, 'issued'
  FROM input t
  WHERE EXISTS (SELECT 1 FROM nonce n WHERE n.key_id = t.key_id AND n.nonce = t.nonce)
   AND EXISTS (SELECT 1 FROM records p WHERE p.id = t.project_id
    AND p.institution = t.institution AND p.type = 'project' AND p.leaf_hash = t.project_leaf)
   AND NOT EXISTS (SELECT 1 FROM numbering_voids v WHERE v.institution = t.institution
    AND v.year = t.year AND v.report_no = t.report_no)
  ORDER BY t.lock_order
  ON CONFLICT DO NOTHING
  RETURNING code
 ), record AS (
  INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash, code)
  SELECT t.record_id, 'report', t.institution, t.created_at, t.canonical, t.leaf_hash, t.code
  FROM input t JOIN code c ON c.code = t.code
  ORDER BY t.i
  RETURNING id
 ), parent AS (
  INSERT INTO record_parents (child_id, parent_id, position)
  SELECT t.record_id, t.project_id, 0 FROM input t JOIN record r ON r.id = t.record_id
 ), outbox AS (
  INSERT INTO outbox (record_id, leaf_hash, enqueued_at)
  SELECT t.record_id, t.leaf_hash, t.enqueued_at FROM input t JOIN record r ON r.id = t.record_id
  ORDER BY t.i
 ), fact AS (
  INSERT INTO report_facts (code, institution, region, report_no, year, status, issued_at,
   issued_on, sealed, revoked, conclusion, project_record_id, project_name, test_items,
   warning_count)
  SELECT t.code, t.institution, i.region, t.report_no, t.year, 'issued', t.created_at,
   (t.created_at AT TIME ZONE 'Asia/Shanghai')::date, false, false, NULL, t.project_id,
   COALESCE((SELECT CASE WHEN jsonb_typeof(b -> 'name') = 'string' THEN b ->> 'name' END
    FROM (SELECT convert_from(p.canonical, 'UTF8')::jsonb -> 'body' AS b
    FROM records p WHERE p.id = t.project_id) AS p), ''), '', 0
  FROM input t JOIN record r ON r.id = t.record_id JOIN institutions i ON i.uscc = t.institution
  ORDER BY t.lock_order
 )
SELECT EXISTS (SELECT 1 FROM nonce n WHERE n.key_id = t.key_id AND n.nonce = t.nonce),
 EXISTS (SELECT 1 FROM record r WHERE r.id = t.record_id)
FROM input t ORDER BY t.i
"""
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
    if project_ok is None or number_taken(session, plan.institution, plan.year, plan.report_no):
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
    take_number(session, plan.institution, plan.year, plan.report_no, code=True)
    refresh_facts(session, [plan.code])  # PostgreSQL: the `fact` step above
    return True


def number_taken(session: Session, institution: str, year: int, report_no: str) -> bool:
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
    cache: IssuanceCache,
    institution: str,
    report_no: str,
    project_id: str,
    base_url: str,
    now: datetime | None = None,
    test_items: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Issue a code for (institution, year, report_no); 409 `duplicate_report_no` if taken.

    `test_items`, when the request names them, are checked against the lab's registered
    qualification scope first (422 `out_of_scope` / `qualification_expired`, as the
    report metadata is; docs/registry.md). Writes in the session's transaction (the caller
    commits); learns the project and region into `cache` for the fast path.
    """
    report_no = check_report_no(report_no)
    if test_items is not None:
        registry.check_qualification(session, institution, list(test_items), china_today())
    now = now or utc_now()
    for _ in range(MAX_ISSUE_ATTEMPTS):
        project = _project(session, cache, institution, project_id)
        region = _region_of(session, cache, institution)
        plan = plan_issue(
            institution=institution,
            report_no=report_no,
            project=project,
            region=region,
            now=now,
            alg=loghash.of(session),
        )
        try:
            inserted = _insert_plan(session, plan)
        except IntegrityError:  # a concurrent request registered the same number first
            session.rollback()
            raise _duplicate(report_no, plan.year) from None
        if inserted:
            return plan.answer(base_url)
        if number_taken(session, institution, plan.year, report_no):
            raise _duplicate(report_no, plan.year)
        # Not taken, yet nothing inserted: the drawn code collided, or the cached project
        # facts are stale. Forget them and draw again.
        cache.forget_project(project_id)
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
    alg: HashAlg = DEFAULT_ALG,
) -> tuple[IssuePlan, dict[str, Any]]:
    """The plan and the parameters of `ISSUE_SIGNED_PG` for a signed issuance."""
    plan = plan_issue(
        institution=institution,
        report_no=report_no,
        project=project,
        region=region,
        now=utc_now(),
        alg=alg,
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
        alg=loghash.of(engine),
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


async def issue_code_signed_async(
    pool: AsyncPgPool,
    *,
    key_id: str,
    nonce: str,
    seen_at: int,
    institution: str,
    report_no: str,
    project: ProjectRef,
    region: str,
    base_url: str,
    alg: HashAlg = DEFAULT_ALG,
) -> tuple[bool, dict[str, Any] | None]:
    """`issue_code_signed` on the event loop, through the async pool (same rows, same
    answer; batched with concurrent issuances by the pool's `SignedIssueBatcher`):
    (nonce_stored, answer), answer None when nothing was inserted. `alg` is
    the deployment's log hash (the pinned `JZ_EVIDENCE__HASH`)."""
    plan, params = plan_signed_issue(
        key_id=key_id,
        nonce=nonce,
        seen_at=seen_at,
        institution=institution,
        report_no=report_no,
        project=project,
        region=region,
        alg=alg,
    )
    stored, inserted = await batcher_for(pool).issue(params)
    return stored, (plan.answer(base_url) if inserted else None)


# --------------------------------------------------------------------------- batching

#: Signed issuances one statement carries at most.
MAX_ISSUE_BATCH = 64
#: Batch statements one event loop has running at once.
MAX_BATCHES_IN_FLIGHT = 1

_Outcome = tuple[bool, bool]


def _lock_key(params: dict[str, Any]) -> tuple[Any, ...]:
    """The order of the numbering rollup rows an issuance's triggers lock."""
    split = split_number(params["report_no"])
    prefix, number, _, suffix = split if split is not None else ("", -1, 0, "")
    return (params["institution"], params["year"], prefix, suffix, number, params["report_no"])


def batch_params(params: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The arrays of `ISSUE_SIGNED_BATCH_PG` for these issuances' `plan_signed_issue`
    parameters."""
    arrays: dict[str, list[Any]] = {
        name: [p[name] for p in params] for name, _ in _BATCH_COLUMNS if name != "lock_order"
    }
    order = [0] * len(params)
    for rank, j in enumerate(sorted(range(len(params)), key=lambda j: _lock_key(params[j]))):
        order[j] = rank
    arrays["lock_order"] = order
    return arrays


class SignedIssueBatcher:
    """Signed issuances from one event loop, several to a statement: group commit in the
    application.

    Every issuance for one lab's numbering year updates the same rollup rows (migration
    0021's triggers: `numbering_years`, the number series in `numbering_series`, the day's
    and the month's report-fact counts), so concurrent one-issuance transactions queue on
    each other's row locks, each holding them through its own commit's WAL flush: one
    flush per issuance, one after the other. A batch pays one statement and one flush
    for all it carries, with the same rows, checks and durability for each issuance (the
    answer waits for the commit).

    An issuance arriving while fewer than `max_in_flight` batches run goes at once (alone
    when the process is idle: no added wait); those arriving meanwhile go together in the
    next batch, up to `max_batch`. Two issuances with the same key and nonce, or the same
    code, never share a batch (the later one waits for the next). When a batch statement
    fails (a deadlock PostgreSQL broke, say), nothing of it was written (one autocommit
    statement) and each of its issuances runs alone with `ISSUE_SIGNED_PG`. Use it from
    its pool's event loop only.
    """

    def __init__(
        self,
        pool: AsyncPgPool,
        max_batch: int = MAX_ISSUE_BATCH,
        max_in_flight: int = MAX_BATCHES_IN_FLIGHT,
    ) -> None:
        self.pool = pool
        self.max_batch = max(1, max_batch)
        self.max_in_flight = max(1, max_in_flight)
        self.statements = 0  #: statements run (batches and single issuances)
        self.issued = 0  #: issuances those statements carried
        self._queue: deque[tuple[dict[str, Any], asyncio.Future[_Outcome]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def issue(self, params: dict[str, Any]) -> _Outcome:
        """(nonce stored, inserted) of one issuance (`plan_signed_issue`'s parameters)."""
        future: asyncio.Future[_Outcome] = self.pool.loop.create_future()
        self._queue.append((params, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            batch = self._take()
            if not batch:
                return
            self._in_flight += 1
            task = self.pool.loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[dict[str, Any], asyncio.Future[_Outcome]]]:
        batch: list[tuple[dict[str, Any], asyncio.Future[_Outcome]]] = []
        later: list[tuple[dict[str, Any], asyncio.Future[_Outcome]]] = []
        nonces: set[tuple[str, str]] = set()
        codes: set[str] = set()
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            params, future = item
            if future.done():  # its request was cancelled before it ran: nothing to do
                continue
            nonce = (params["key_id"], params["nonce"])
            if nonce in nonces or params["code"] in codes:
                later.append(item)
                continue
            nonces.add(nonce)
            codes.add(params["code"])
            batch.append(item)
        self._queue.extendleft(reversed(later))
        return batch

    async def _run(self, batch: list[tuple[dict[str, Any], asyncio.Future[_Outcome]]]) -> None:
        try:
            outcomes = await self._execute([params for params, _ in batch])
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._in_flight -= 1
            self._dispatch()

    async def _execute(self, params: list[dict[str, Any]]) -> list[_Outcome | BaseException]:
        if len(params) > 1:
            self.statements += 1
            self.issued += len(params)
            try:
                rows = await self.pool.fetchall(ISSUE_SIGNED_BATCH_PG, batch_params(params))
            except Exception as exc:  # nothing of the batch was written: one by one
                _log.warning("issuance batch of %d failed (%s); issuing one by one",
                             len(params), type(exc).__name__)
            else:
                if len(rows) != len(params):
                    raise RuntimeError("issuance batch answered the wrong number of rows")
                return [signed_issue_outcome(row) for row in rows]
        outcomes: list[_Outcome | BaseException] = []
        for one in params:
            self.statements += 1
            self.issued += 1
            try:
                outcomes.append(
                    signed_issue_outcome(await self.pool.fetchone(ISSUE_SIGNED_PG, one))
                )
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


_BATCHERS: weakref.WeakKeyDictionary[AsyncPgPool, SignedIssueBatcher] = (
    weakref.WeakKeyDictionary()
)


def batcher_for(pool: AsyncPgPool) -> SignedIssueBatcher:
    """The batcher of `pool` (one per pool, made on first use, gone with the pool)."""
    batcher = _BATCHERS.get(pool)
    if batcher is None:
        batcher = _BATCHERS[pool] = SignedIssueBatcher(pool)
    return batcher


def _duplicate(report_no: str, year: int) -> JianzhengError:
    return Conflict(
        "duplicate_report_no",
        f"report number {report_no!r} is already registered (or voided) for {year}",
    )
