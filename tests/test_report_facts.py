"""The console's report facts tables (issue 14) stay equal to what the records say: after
issuance, metadata, seal, revocation and supersede, on SQLite and PostgreSQL (where
issuance writes its fact inside the one issuance statement); migration 0018 back-fills
them from the records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, select

from service.state import ServiceState, build_state
from service.storage.db import alembic_config, upgrade
from service.storage.models import ReportCode, ReportFactItem, ReportFactRow
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
