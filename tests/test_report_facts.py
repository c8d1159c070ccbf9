"""The console's report facts tables (issue 14) stay equal to what the records say: after
issuance, metadata, seal, revocation and supersede, on SQLite and PostgreSQL (where
issuance writes its fact inside the one issuance statement); migration 0018 back-fills
them from the records. The count tables (report_fact_days / _months) stay equal to the facts
grouped afresh, and the numbering summaries give the same counts and missing numbers as the
numbering audit's scan of every number (migration 0021 back-fills both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, func, select

from service.clock import china_year, utc_now
from service.domain.reports.numbering import numbering_audit, numbering_audits
from service.state import ServiceState, build_state
from service.storage.db import alembic_config, upgrade
from service.storage.models import (
    NumberingGap,
    NumberingSeries,
    NumberingYear,
    ReportCode,
    ReportFactDay,
    ReportFactItem,
    ReportFactMonth,
    ReportFactRow,
)
from service.storage.report_facts import compute_facts
from tests.console_kit import seed
from tests.fixtures.db import make_settings
from tests.labkit import client_for, make_app


def _table(state: ServiceState) -> dict[str, dict[str, Any]]:
    """The facts as stored: code -> columns, with the item rows as a sorted list."""
    with state.sessions() as s:
        out = {}
        for row in s.scalars(select(ReportFactRow)):
            cols = {c.name: getattr(row, c.name) for c in ReportFactRow.__table__.columns}
            cols["issued_at"] = cols["issued_at"].replace(tzinfo=None)
            out[row.code] = cols
        for item in s.scalars(select(ReportFactItem)):
            out[item.code].setdefault("items", []).append(
                (item.test_item, item.institution, item.region, item.issued_on, item.conclusion))
        for cols in out.values():
            cols["items"] = sorted(cols.get("items", []))
        return out


def _recomputed(state: ServiceState) -> dict[str, dict[str, Any]]:
    """The same computed afresh from the records."""
    with state.sessions() as s:
        codes = list(s.scalars(select(ReportCode.code)))
        out = {}
        for row in compute_facts(s, codes):
            items = sorted((t, row["institution"], row["region"], row["issued_on"],
                            row["conclusion"]) for t in row.pop("test_item_list"))
            row["issued_at"] = row["issued_at"].replace(tzinfo=None)
            out[row["code"]] = {**row, "items": items}
        return out


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[ServiceState, Any, Any]]:
    state = build_state(make_settings(tmp_path, db_url), chain=None)
    app = make_app(state)
    yield state, app, seed(state, app)
    state.engine.dispose()


def test_facts_follow_the_records_through_revocation_and_supersede(
        world: tuple[ServiceState, Any, Any]) -> None:
    state, app, seeded = world
    facts = _table(state)
    assert set(facts) == set(seeded.reports)
    assert facts == _recomputed(state)
    for code, (inst, conclusion, item, region) in seeded.reports.items():
        fact = facts[code]
        assert (fact["institution"], fact["conclusion"], fact["region"]) == (
            inst, conclusion, region)
        assert fact["test_items"] == item and fact["status"] == "reported"
        assert fact["sealed"] == (code == seeded.sealed)
    sz1 = [c for c, v in seeded.reports.items() if v[3] == "440305"]
    revoked, superseded, successor = sz1[1], sz1[2], sz1[3]
    with client_for(app, seeded.labs["sz1"]) as c:
        r = c.post(f"/api/v1/reports/{revoked}/revocation", json_body={"reason": "数据有误"})
        assert r.status_code == 201, r.text
        r = c.post(f"/api/v1/reports/{superseded}/revocation",
                   json_body={"reason": "更正", "superseded_by": successor})
        assert r.status_code == 201, r.text
        r = c.issue_code("SZ1-2026-0099", facts[revoked]["project_record_id"])
        assert r.status_code == 201, r.text
        fresh = r.json()["code"]
    facts = _table(state)
    assert facts[fresh]["status"] == "issued" and facts[fresh]["conclusion"] is None
    assert facts[fresh]["project_name"] == facts[revoked]["project_name"] != ""
    assert facts == _recomputed(state)
    assert (facts[revoked]["status"], facts[revoked]["revoked"]) == ("revoked", True)
    assert (facts[superseded]["status"], facts[superseded]["revoked"]) == ("superseded", True)
    assert (facts[successor]["status"], facts[successor]["revoked"]) == ("reported", False)


def test_the_migration_back_fills_the_facts(world: tuple[ServiceState, Any, Any],
                                            db_url: str) -> None:
    state, _, seeded = world
    before = _table(state)
    with state.sessions() as s:
        s.execute(delete(ReportFactItem))
        s.execute(delete(ReportFactRow))
        s.commit()
    assert _table(state) == {}
    state.engine.dispose()
    command.downgrade(alembic_config(db_url), "0017")
    upgrade(db_url)
    after = _table(state)
    assert set(after) == set(seeded.reports)
    assert after == before


def _count_tables(state: ServiceState) -> dict[str, dict[tuple[Any, ...], int]]:
    """The count tables as stored (rows at 0 left out: readers skip them)."""
    with state.sessions() as s:
        return {model.__tablename__: {
            (r.region, r.day, r.institution, r.status, r.conclusion, r.test_items): r.n
            for r in s.scalars(select(model)) if r.n != 0}
            for model in (ReportFactDay, ReportFactMonth)}


def _counted_afresh(state: ServiceState) -> dict[str, dict[tuple[Any, ...], int]]:
    out: dict[str, dict[tuple[Any, ...], int]] = {"report_fact_days": {},
                                                  "report_fact_months": {}}
    with state.sessions() as s:
        for f in s.scalars(select(ReportFactRow)):
            for table, day in (("report_fact_days", f.issued_on),
                               ("report_fact_months", f.issued_on.replace(day=1))):
                key = (f.region, day, f.institution, f.status, f.conclusion or "",
                       f.test_items)
                out[table][key] = out[table].get(key, 0) + 1
    return out


def _numbering(state: ServiceState) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the summaries' numbering of every lab this year, the audit's scan of the same)."""
    now = utc_now()
    year = china_year(now)
    with state.sessions() as s:
        fast = numbering_audits(s, institutions=None, year=year, now=now)
        scanned = {}
        for inst in s.scalars(select(ReportCode.institution).where(ReportCode.year == year)
                              .distinct()):
            audit = numbering_audit(s, institution=inst, year=year, now=now)
            scanned[inst] = {"counts": audit["counts"],
                             "missing": [m["report_no"] for m in audit["missing"]][:20],
                             "voided": audit["voided"]}
        fast = {inst: {"counts": a["counts"], "missing": [m["report_no"] for m in a["missing"]],
                       "voided": a["voided"]} for inst, a in fast.items()}
        return fast, scanned


def test_count_tables_and_numbering_follow_every_write(
        world: tuple[ServiceState, Any, Any]) -> None:
    state, app, seeded = world
    assert _count_tables(state) == _counted_afresh(state)
    assert sum(_count_tables(state)["report_fact_months"].values()) == len(seeded.reports)
    fast, scanned = _numbering(state)
    assert fast == scanned
    sz1_inst = seeded.labs["sz1"].institution
    assert fast[sz1_inst]["counts"]["missing"] == 1  # SZ1-2026-0004
    assert fast[sz1_inst]["missing"] == ["SZ1-2026-0004"]
    sz1 = [c for c, v in seeded.reports.items() if v[3] == "440305"]
    project = _table(state)[sz1[0]]["project_record_id"]
    with client_for(app, seeded.labs["sz1"]) as c:
        r = c.post(f"/api/v1/reports/{sz1[1]}/revocation", json_body={"reason": "数据有误"})
        assert r.status_code == 201, r.text
        # A number past the highest opens a gap (6..9); a void and a code fill parts of it
        # out of order, a narrower spelling of a taken number changes nothing but the width.
        for report_no in ("SZ1-2026-0010", "SZ1-2026-0004", "SZ1-2026-008", "SZ1-2026-07"):
            r = c.issue_code(report_no, project)
            assert r.status_code == 201, r.text
        r = c.post("/api/v1/numbering/voids", json_body={"report_no": "SZ1-2026-0006",
                                                         "reason": "作废"})
        assert r.status_code == 201, r.text
        r = c.post("/api/v1/numbering/voids", json_body={"report_no": "SZ1-2026-0010",
                                                         "reason": "作废"})
        assert r.status_code == 201, r.text
        r = c.issue_code("SZ1-2026-0008A", project)  # another series
        assert r.status_code == 201, r.text
    assert _count_tables(state) == _counted_afresh(state)
    fast, scanned = _numbering(state)
    assert fast == scanned
    assert fast[sz1_inst]["missing"] == ["SZ1-2026-09"] + [
        f"SZ1-2026-000{n}A" for n in range(1, 8)]  # the narrowest width of each series
    assert fast[sz1_inst]["counts"]["missing"] == 1 + 7  # 0009; 0001..0007 of "…A"


def test_the_migration_back_fills_the_count_tables_and_numbering(
        world: tuple[ServiceState, Any, Any], db_url: str) -> None:
    state, _, _ = world
    counts, (numbering, _) = _count_tables(state), _numbering(state)
    with state.sessions() as s:
        for model in (ReportFactDay, ReportFactMonth, NumberingGap, NumberingSeries,
                      NumberingYear):
            s.execute(delete(model))
        s.commit()
        assert s.scalar(select(func.count()).select_from(ReportFactDay)) == 0
    state.engine.dispose()
    command.downgrade(alembic_config(db_url), "0018")
    upgrade(db_url)
    assert _count_tables(state) == counts
    assert _numbering(state)[0] == numbering
