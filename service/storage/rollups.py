"""The console's summaries (issue 14), kept exact and current in the same transaction as
the rows they summarise:

- `report_fact_days` / `report_fact_months`: the report facts counted by region, lab, day
  (or month), status, conclusion and test-item set. Triggers on `report_facts` keep them
  (PostgreSQL: statement-level, with transition tables, so a bulk write is one grouped
  upsert; SQLite: row-level), whoever writes the facts.
- `numbering_years`, `numbering_series`, `numbering_gaps`: per lab and numbering year the
  count of codes, per series (report numbers split as `numbering.sequence_of` does) the
  highest number and narrowest width, and the runs of numbers from 1 to the highest that
  no code or void took. PostgreSQL: row triggers on `report_codes` and `numbering_voids`
  (`jz_take_number`); SQLite: `take_number` below, called where those rows are inserted.
  The numbering panel's missing numbers are then the gaps' sizes (arithmetic), not a scan
  of every report number.

`rebuild_rollups` and `rebuild_numbering` recompute them all (migration 0021's back-fill,
bench/console.py after a bulk load).
"""

from __future__ import annotations

import re
from collections import defaultdict

from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from service.storage.models import (
    NumberingGap,
    NumberingSeries,
    NumberingVoid,
    NumberingYear,
    ReportCode,
)

ROLLUPS = ("report_fact_days", "report_fact_months")
_KEY = "region, day, institution, status, conclusion, test_items"
#: A report number's series and sequence number: the last run of ASCII digits (the same
#: split as numbering.sequence_of; PostgreSQL's jz_take_number uses the same pattern).
_SEQ_RE = re.compile(r"^(.*[^0-9])?([0-9]+)([^0-9]*)$", re.DOTALL)


def _pg_rollup_function(kind: str) -> str:
    """The trigger function of `kind` (insert / delete / update) on report_facts."""
    cols = "region, {day}, institution, status, coalesce(conclusion, ''), test_items"
    sources = {
        "insert": ["SELECT {cols}, 1 AS s FROM new_rows"],
        "delete": ["SELECT {cols}, -1 AS s FROM old_rows"],
        "update": ["SELECT {cols}, 1 AS s FROM new_rows",
                   "SELECT {cols}, -1 AS s FROM old_rows"],
    }[kind]
    steps = []
    for table, day in (("report_fact_days", "issued_on"),
                       ("report_fact_months", "date_trunc('month', issued_on)::date")):
        source = " UNION ALL ".join(src.format(cols=cols.format(day=day)) for src in sources)
        steps.append(
            f"INSERT INTO {table} AS r ({_KEY}, n)"
            f" SELECT k1, k2, k3, k4, k5, k6, sum(s) FROM ({source})"
            " AS d (k1, k2, k3, k4, k5, k6, s)"
            " GROUP BY k1, k2, k3, k4, k5, k6 HAVING sum(s) <> 0"
            " ORDER BY k1, k2, k3, k4, k5, k6"
            f" ON CONFLICT ({_KEY}) DO UPDATE SET n = r.n + EXCLUDED.n;")
    return (f"CREATE FUNCTION jz_report_facts_{kind}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n  " + "\n  ".join(steps) + "\n  RETURN NULL;\nEND $$")


PG_TAKE_NUMBER = r"""
CREATE FUNCTION jz_take_number(p_inst text, p_year integer, p_no text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  m text[]; pre text; suf text; k bigint; w integer; old_last bigint; g_lo bigint; g_hi bigint;
BEGIN
  m := regexp_match(p_no, '^(.*[^0-9])?([0-9]+)([^0-9]*)$');
  IF m IS NULL OR length(m[2]) > 18 THEN
    RETURN;
  END IF;
  pre := coalesce(m[1], ''); k := m[2]::bigint; w := length(m[2]); suf := m[3];
  INSERT INTO numbering_series (institution, year, prefix, suffix, last, width)
  VALUES (p_inst, p_year, pre, suf, -1, w) ON CONFLICT DO NOTHING;
  SELECT last INTO old_last FROM numbering_series
   WHERE institution = p_inst AND year = p_year AND prefix = pre AND suffix = suf FOR UPDATE;
  UPDATE numbering_series SET last = greatest(last, k), width = least(width, w)
   WHERE institution = p_inst AND year = p_year AND prefix = pre AND suffix = suf;
  IF k > old_last THEN
    IF k - 1 >= greatest(old_last + 1, 1) THEN
      INSERT INTO numbering_gaps (institution, year, prefix, suffix, lo, hi)
      VALUES (p_inst, p_year, pre, suf, greatest(old_last + 1, 1), k - 1);
    END IF;
  ELSIF k >= 1 THEN
    SELECT lo, hi INTO g_lo, g_hi FROM numbering_gaps
     WHERE institution = p_inst AND year = p_year AND prefix = pre AND suffix = suf
       AND lo <= k AND hi >= k;
    IF FOUND THEN
      DELETE FROM numbering_gaps
       WHERE institution = p_inst AND year = p_year AND prefix = pre AND suffix = suf
         AND lo = g_lo;
      IF g_lo < k THEN
        INSERT INTO numbering_gaps VALUES (p_inst, p_year, pre, suf, g_lo, k - 1);
      END IF;
      IF k < g_hi THEN
        INSERT INTO numbering_gaps VALUES (p_inst, p_year, pre, suf, k + 1, g_hi);
      END IF;
    END IF;
  END IF;
END $$
"""

PG_DDL = [
    *(_pg_rollup_function(kind) for kind in ("insert", "delete", "update")),
    "CREATE TRIGGER report_facts_rollup_insert AFTER INSERT ON report_facts"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION jz_report_facts_insert()",
    "CREATE TRIGGER report_facts_rollup_delete AFTER DELETE ON report_facts"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION jz_report_facts_delete()",
    "CREATE TRIGGER report_facts_rollup_update AFTER UPDATE ON report_facts"
    " REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION jz_report_facts_update()",
    PG_TAKE_NUMBER,
    """CREATE FUNCTION jz_report_codes_taken() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO numbering_years AS y (institution, year, issued)
  VALUES (NEW.institution, NEW.year, 1)
  ON CONFLICT (institution, year) DO UPDATE SET issued = y.issued + 1;
  PERFORM jz_take_number(NEW.institution, NEW.year, NEW.report_no);
  RETURN NULL;
END $$""",
    """CREATE FUNCTION jz_numbering_voids_taken() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM jz_take_number(NEW.institution, NEW.year, NEW.report_no);
  RETURN NULL;
END $$""",
    "CREATE TRIGGER report_codes_numbering AFTER INSERT ON report_codes"
    " FOR EACH ROW EXECUTE FUNCTION jz_report_codes_taken()",
    "CREATE TRIGGER numbering_voids_numbering AFTER INSERT ON numbering_voids"
    " FOR EACH ROW EXECUTE FUNCTION jz_numbering_voids_taken()",
]

PG_DROP = [
    "DROP TRIGGER IF EXISTS report_facts_rollup_insert ON report_facts",
    "DROP TRIGGER IF EXISTS report_facts_rollup_delete ON report_facts",
    "DROP TRIGGER IF EXISTS report_facts_rollup_update ON report_facts",
    "DROP TRIGGER IF EXISTS report_codes_numbering ON report_codes",
    "DROP TRIGGER IF EXISTS numbering_voids_numbering ON numbering_voids",
    "DROP FUNCTION IF EXISTS jz_report_facts_insert()",
    "DROP FUNCTION IF EXISTS jz_report_facts_delete()",
    "DROP FUNCTION IF EXISTS jz_report_facts_update()",
    "DROP FUNCTION IF EXISTS jz_report_codes_taken()",
    "DROP FUNCTION IF EXISTS jz_numbering_voids_taken()",
    "DROP FUNCTION IF EXISTS jz_take_number(text, integer, text)",
]


def _sqlite_step(table: str, row: str, sign: str) -> str:
    day = f"{row}.issued_on" if table == "report_fact_days" else \
        f"date({row}.issued_on, 'start of month')"
    return (f"INSERT INTO {table} ({_KEY}, n) VALUES ({row}.region, {day}, {row}.institution,"
            f" {row}.status, coalesce({row}.conclusion, ''), {row}.test_items, {sign}1)"
            f" ON CONFLICT ({_KEY}) DO UPDATE SET n = n {sign} 1;")


SQLITE_DDL = [
    f"CREATE TRIGGER report_facts_rollup_{event.lower()} AFTER {event} ON report_facts BEGIN "
    + " ".join(_sqlite_step(t, row, sign) for row, sign in rows for t in ROLLUPS)
    + " END"
    for event, rows in (("INSERT", [("NEW", "+")]), ("DELETE", [("OLD", "-")]),
                        ("UPDATE", [("OLD", "-"), ("NEW", "+")]))
]

SQLITE_DROP = [f"DROP TRIGGER IF EXISTS report_facts_rollup_{e}"
               for e in ("insert", "delete", "update")]


def install(conn: object) -> None:
    """Create the triggers (and PostgreSQL functions) on a migration's connection."""
    bind = conn  # an alembic op.get_bind()
    ddl = PG_DDL if bind.dialect.name == "postgresql" else SQLITE_DDL  # type: ignore[attr-defined]
    for statement in ddl:
        bind.exec_driver_sql(statement)  # type: ignore[attr-defined]


def uninstall(conn: object) -> None:
    bind = conn
    ddl = PG_DROP if bind.dialect.name == "postgresql" else SQLITE_DROP  # type: ignore[attr-defined]
    for statement in ddl:
        bind.exec_driver_sql(statement)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- rebuilds


def rebuild_rollups(session: Session) -> None:
    """Both count tables recomputed from report_facts (one grouped insert each)."""
    month = ("date_trunc('month', issued_on)::date"
             if session.get_bind().dialect.name == "postgresql"
             else "date(issued_on, 'start of month')")
    for table, day in (("report_fact_days", "issued_on"), ("report_fact_months", month)):
        session.execute(text(f"DELETE FROM {table}"))
        session.execute(text(
            f"INSERT INTO {table} ({_KEY}, n) SELECT region, {day}, institution, status,"
            " coalesce(conclusion, ''), test_items, count(*) FROM report_facts"
            f" GROUP BY region, {day}, institution, status, coalesce(conclusion, ''),"
            " test_items"))


def split_number(report_no: str) -> tuple[str, int, int, str] | None:
    """(prefix, number, digit width, suffix) of a report number; None without digits (or
    with a run of more than 18, beyond a 64-bit count)."""
    m = _SEQ_RE.match(report_no)
    if m is None or len(m.group(2)) > 18:
        return None
    return m.group(1) or "", int(m.group(2)), len(m.group(2)), m.group(3)


def _gap_runs(numbers: set[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    expected = 1
    for n in sorted(x for x in numbers if x >= 1):
        if n > expected:
            runs.append((expected, n - 1))
        expected = n + 1
    return runs


def rebuild_numbering(session: Session) -> None:
    """The numbering summaries recomputed from report_codes and numbering_voids."""
    for model in (NumberingGap, NumberingSeries, NumberingYear):
        session.execute(delete(model))
    issued: dict[tuple[str, int], int] = defaultdict(int)
    series: dict[tuple[str, int, str, str], set[int]] = defaultdict(set)
    widths: dict[tuple[str, int, str, str], int] = {}

    def take(inst: str, year: int, report_no: str) -> None:
        split = split_number(report_no)
        if split is None:
            return
        prefix, number, width, suffix = split
        key = (inst, year, prefix, suffix)
        series[key].add(number)
        widths[key] = min(widths.get(key, width), width)

    for inst, year, report_no in session.execute(
            select(ReportCode.institution, ReportCode.year, ReportCode.report_no)):
        issued[(inst, year)] += 1
        take(inst, year, report_no)
    for inst, year, report_no in session.execute(
            select(NumberingVoid.institution, NumberingVoid.year, NumberingVoid.report_no)):
        take(inst, year, report_no)
    if issued:
        session.execute(insert(NumberingYear), [
            {"institution": i, "year": y, "issued": n} for (i, y), n in issued.items()])
    if series:
        session.execute(insert(NumberingSeries), [
            {"institution": k[0], "year": k[1], "prefix": k[2], "suffix": k[3],
             "last": max(nums), "width": widths[k]} for k, nums in series.items()])
    gaps = [{"institution": k[0], "year": k[1], "prefix": k[2], "suffix": k[3],
             "lo": lo, "hi": hi} for k, nums in series.items() for lo, hi in _gap_runs(nums)]
    for i in range(0, len(gaps), 5000):
        session.execute(insert(NumberingGap), gaps[i : i + 5000])


def take_number(session: Session, institution: str, year: int, report_no: str, *,
                code: bool) -> None:
    """A number taken by a new report code (`code`) or a void, on backends without the
    PostgreSQL triggers (SQLite: one writer at a time); the same steps as jz_take_number."""
    if session.get_bind().dialect.name == "postgresql":
        return  # the triggers did it
    if code:
        row = session.get(NumberingYear, (institution, year))
        if row is None:
            session.add(NumberingYear(institution=institution, year=year, issued=1))
        else:
            row.issued += 1
    split = split_number(report_no)
    if split is None:
        session.flush()
        return
    prefix, k, width, suffix = split
    series = session.get(NumberingSeries, (institution, year, prefix, suffix))
    if series is None:
        series = NumberingSeries(institution=institution, year=year, prefix=prefix,
                                 suffix=suffix, last=-1, width=width)
        session.add(series)
    old_last = series.last
    series.last, series.width = max(old_last, k), min(series.width, width)
    key = {"institution": institution, "year": year, "prefix": prefix, "suffix": suffix}
    if k > old_last:
        if k - 1 >= max(old_last + 1, 1):
            session.add(NumberingGap(**key, lo=max(old_last + 1, 1), hi=k - 1))
    elif k >= 1:
        session.flush()
        gap = session.scalars(select(NumberingGap).filter_by(**key).where(
            NumberingGap.lo <= k, NumberingGap.hi >= k)).first()
        if gap is not None:
            lo, hi = gap.lo, gap.hi
            session.delete(gap)
            session.flush()
            if lo < k:
                session.add(NumberingGap(**key, lo=lo, hi=k - 1))
            if k < hi:
                session.add(NumberingGap(**key, lo=k + 1, hi=hi))
    session.flush()
