"""Signed issuances batched on the event loop (domain/reports/issuance.py
`SignedIssueBatcher`): concurrent issuances share statements, each gets the answer it
would get alone (replayed nonce, duplicate and voided numbers), a failed batch falls
back to one statement per issuance, and the
console rollups the triggers keep stay exactly what a rebuild from the rows gives.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from service.client import new_nonce
from service.clock import china_year, utc_now
from service.domain import reports as domain
from service.domain.reports.issuance import SignedIssueBatcher
from service.state import build_state
from service.storage.db import AsyncPgPool, libpq_conninfo, session_scope
from service.storage.models import NumberingVoid, Record, ReportCode
from service.storage.rollups import rebuild_numbering, rebuild_rollups
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, seed_record

pytestmark = pytest.mark.postgres

ROLLUP_TABLES = ("report_fact_days", "report_fact_months", "numbering_years",
                 "numbering_series", "numbering_gaps")


def _rollups(session: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(tuple(r) for r in session.execute(text(f"SELECT * FROM {t}")))
            for t in ROLLUP_TABLES}


def test_concurrent_issuances_share_statements_and_keep_rollups_exact(
    tmp_path: Path, pg_url: str
) -> None:
    state = build_state(make_settings(tmp_path, pg_url), chain=None)
    labs = [add_lab(state, 51), add_lab(state, 52)]
    projects = [seed_record(state, lab.institution or "", "project") for lab in labs]
    with state.sessions() as s:
        refs = []
        for pid in projects:
            rec = s.get(Record, pid)
            assert rec is not None
            refs.append(domain.ProjectRef(pid, rec.institution, "project", rec.leaf_hash))
    with session_scope(state.sessions) as s:
        void_rec = seed_record(state, labs[0].institution or "", "numbering_void")
        s.add(NumberingVoid(institution=labs[0].institution, year=china_year(),
                            report_no="BG-0005", code=None, reason="x", record_id=void_rec,
                            voided_at=utc_now()))

    def params(lab: int, report_no: str, nonce: str | None = None) -> dict[str, Any]:
        return domain.plan_signed_issue(
            key_id=labs[lab].key_id, nonce=nonce or new_nonce(), seen_at=int(time.time()),
            institution=labs[lab].institution or "", report_no=report_no,
            project=refs[lab], region="440300",
        )[1]

    replayed = new_nonce()
    # Numbers out of order (gaps opened and closed within and across batches), two labs,
    # a number twice, a voided number, a nonce twice, a number without digits.
    wanted: list[tuple[dict[str, Any], tuple[bool, bool]]] = []
    for n in (9, 3, 12, 1, 7, 2, 30, 4, 8, 6, 11, 10):
        wanted.append((params(n % 2, f"BG-{n:04d}"), (True, True)))
    wanted.append((params(1, "BG-0003"), (True, False)))  # lab 1's 3 again: duplicate
    wanted.append((params(0, "BG-0005"), (True, False)))  # voided
    wanted.append((params(0, "BG-0013", nonce=replayed), (True, True)))
    wanted.append((params(0, "BG-0014", nonce=replayed), (False, False)))  # replay
    wanted.append((params(1, "无编号"), (True, True)))
    wanted.append((params(0, "BG-0009"), (True, True)))  # lab 0's own 9 (9 above: lab 1)

    async def run() -> tuple[list[tuple[bool, bool]], int, int]:
        pool = AsyncPgPool(libpq_conninfo(state.engine), 4)
        batcher = SignedIssueBatcher(pool)
        try:
            first = await batcher.issue(params(0, "BG-0100"))  # alone: the loop was idle
            assert first == (True, True)
            got = await asyncio.gather(*(batcher.issue(p) for p, _ in wanted))
        finally:
            await pool.close()
        return list(got), batcher.statements, batcher.issued

    got, statements, issued = asyncio.run(run())
    assert got == [w for _, w in wanted]
    assert issued == len(wanted) + 1
    assert statements < issued  # they shared statements
    with state.sessions() as s:
        codes = sorted(s.execute(select(ReportCode.institution, ReportCode.report_no)))
        assert len(codes) == len(set(codes)) == 16
        before = _rollups(s)
        rebuild_rollups(s)
        rebuild_numbering(s)
        s.flush()
        assert _rollups(s) == before
        s.rollback()
        assert before["numbering_gaps"]  # 30 left a gap: the rollups were exercised
    state.engine.dispose()


def test_a_failed_batch_issues_one_by_one(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = build_state(make_settings(tmp_path, pg_url), chain=None)
    lab = add_lab(state, 53)
    pid = seed_record(state, lab.institution or "", "project")
    with state.sessions() as s:
        rec = s.get(Record, pid)
        assert rec is not None
        ref = domain.ProjectRef(pid, rec.institution, "project", rec.leaf_hash)
    from service.domain.reports import issuance

    monkeypatch.setattr(issuance, "ISSUE_SIGNED_BATCH_PG", "SELECT 1/0")

    async def run() -> list[tuple[bool, bool]]:
        pool = AsyncPgPool(libpq_conninfo(state.engine), 2)
        batcher = SignedIssueBatcher(pool)
        try:
            return list(await asyncio.gather(*(
                batcher.issue(domain.plan_signed_issue(
                    key_id=lab.key_id, nonce=new_nonce(), seen_at=int(time.time()),
                    institution=lab.institution or "", report_no=f"BG-{n}", project=ref,
                    region="440300")[1])
                for n in range(6))))
        finally:
            await pool.close()

    assert asyncio.run(run()) == [(True, True)] * 6
    with state.sessions() as s:
        assert len(s.scalars(select(ReportCode.code)).all()) == 6
    state.engine.dispose()
