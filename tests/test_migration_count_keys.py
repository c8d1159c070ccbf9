"""Migration 0022: the count tables (report_fact_days / _months) keyed by day first keep
every row of 0021, the rollup triggers on report_facts keep them current afterwards
(insert, update, delete), and the downgrade restores the region-first key with the same
rows and working triggers (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date
from typing import Any

from alembic import command
from sqlalchemy import Engine, inspect, text

from service.storage.db import alembic_config, make_engine

TABLES = ("report_fact_days", "report_fact_months")
OLD_KEY = ["region", "day", "institution", "status", "conclusion", "test_items"]
NEW_KEY = ["day", "region", "institution", "status", "conclusion", "test_items"]
LABS = {"91440300MA00000001": "440305", "91110000MA00000003": "110105"}


def _fact(i: int) -> dict[str, Any]:
    inst = sorted(LABS)[i % 2]
    day = date(2025, 1 + i % 12, 1 + i % 28)
    return {"code": f"C{i:05d}", "institution": inst, "region": LABS[inst],
            "report_no": f"N-{i}", "year": day.year, "status": ("issued", "reported")[i % 2],
            "issued_at": f"{day.isoformat()} 04:00:00+00:00", "issued_on": day,
            "conclusion": ("pass", "fail", None)[i % 3],
            "test_items": ("", "钢筋拉伸", "混凝土抗压强度\n钢筋拉伸")[i % 3]}


def _insert_facts(engine: Engine, facts: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO report_facts (code, institution, region, report_no, year, status,"
            " issued_at, issued_on, sealed, revoked, conclusion, project_record_id,"
            " project_name, test_items, warning_count) VALUES (:code, :institution, :region,"
            " :report_no, :year, :status, :issued_at, :issued_on, false, false, :conclusion,"
            " 'P', '工程', :test_items, 0)"), facts)


def _counts(engine: Engine) -> dict[str, dict[tuple[Any, ...], int]]:
    with engine.connect() as conn:
        return {t: {(str(r[0]), str(r[1]), *r[2:6]): int(r[6]) for r in conn.execute(text(
            f"SELECT region, day, institution, status, conclusion, test_items, n FROM {t}"
            " WHERE n <> 0"))} for t in TABLES}


def _grouped(facts: list[dict[str, Any]]) -> dict[str, dict[tuple[Any, ...], int]]:
    out: dict[str, dict[tuple[Any, ...], int]] = {t: {} for t in TABLES}
    for f in facts:
        for table, day in (("report_fact_days", f["issued_on"]),
                           ("report_fact_months", f["issued_on"].replace(day=1))):
            key = (f["region"], day.isoformat(), f["institution"], f["status"],
                   f["conclusion"] or "", f["test_items"])
            out[table][key] = out[table].get(key, 0) + 1
    return out


def _keys(engine: Engine) -> list[list[str]]:
    engine.dispose()
    return [inspect(engine).get_pk_constraint(t)["constrained_columns"] for t in TABLES]


def _writes_follow(engine: Engine, facts: list[dict[str, Any]], start: int) -> None:
    """New facts, a changed conclusion and a deleted fact: the tables follow."""
    new = [_fact(i) for i in range(start, start + 7)]
    _insert_facts(engine, new)
    facts.extend(new)
    with engine.begin() as conn:
        conn.execute(text("UPDATE report_facts SET conclusion = 'fail' WHERE code = :c"),
                     {"c": facts[0]["code"]})
        conn.execute(text("DELETE FROM report_facts WHERE code = :c"), {"c": facts[1]["code"]})
    facts[0]["conclusion"] = "fail"
    del facts[1]
    assert _counts(engine) == _grouped(facts)


def test_the_count_tables_are_keyed_by_day_and_back(empty_db_url: str) -> None:
    cfg = alembic_config(empty_db_url)
    command.upgrade(cfg, "0021")
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO institutions (uscc, region, name, created_at)"
                              " VALUES (:u, :r, :u, '2026-01-01 00:00:00+00:00')"),
                         [{"u": u, "r": r} for u, r in LABS.items()])
        facts = [_fact(i) for i in range(60)]
        _insert_facts(engine, facts[:40])  # one statement
        for f in facts[40:]:
            _insert_facts(engine, [f])
        before = _counts(engine)
        assert before == _grouped(facts)
        assert _keys(engine) == [OLD_KEY, OLD_KEY]

        command.upgrade(cfg, "0022")
        assert _keys(engine) == [NEW_KEY, NEW_KEY]
        assert _counts(engine) == before
        _writes_follow(engine, facts, 100)

        command.downgrade(cfg, "0021")
        assert _keys(engine) == [OLD_KEY, OLD_KEY]
        assert _counts(engine) == _grouped(facts)
        _writes_follow(engine, facts, 200)
    finally:
        engine.dispose()
