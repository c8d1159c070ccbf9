"""Report codes (INTERFACE §4): layout, parsing, check character, concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing
import re
from pathlib import Path

import pytest
from stdnum.iso7064 import mod_37_36

from service.domain.codes import (
    ALPHABET,
    CODE_CHARS,
    InvalidCode,
    generate_code,
    parse_code,
    revocation_subject,
)


def test_layout_is_readable_and_checked() -> None:
    code = generate_code("440300", 2026)
    c = code.canonical
    assert len(c) == CODE_CHARS == 19
    assert c.startswith("44030026")
    assert re.fullmatch(r"[0-9A-Z]{19}", c)
    assert mod_37_36.is_valid(c)
    assert code.printed == f"{c[:6]}-{c[6:8]}-{c[8:13]}-{c[13:18]}-{c[18]}"


def test_any_case_and_separators_parse_to_canonical() -> None:
    c = generate_code("110105", 2031).canonical
    printed = parse_code(c).printed
    for form in (c, c.lower(), printed, printed.lower(), printed.replace("-", " "),
                 f"  {c[:4]} {c[4:10]}\t{c[10:]} ", "-".join(c)):
        assert parse_code(form).canonical == c


def test_random_part_is_unpredictable() -> None:
    codes = {generate_code("440300", 2026).random for _ in range(2000)}
    assert len(codes) == 2000
    # Every base-36 digit appears in every random position over 2000 draws.
    for pos in range(10):
        assert len({r[pos] for r in codes}) == 36


def test_every_single_mistyped_character_is_caught() -> None:
    for _ in range(20):
        c = generate_code("440300", 2026).canonical
        for i in range(CODE_CHARS):
            for ch in ALPHABET:
                if ch == c[i]:
                    continue
                typo = c[:i] + ch + c[i + 1 :]
                with pytest.raises(InvalidCode):
                    parse_code(typo)


def test_adjacent_transpositions_are_almost_all_caught() -> None:
    """MOD 37,36 is a hybrid system: it catches every single substitution but only ~99.9%
    of adjacent transpositions (documented in docs/report-codes.md)."""
    total = missed = 0
    for _ in range(500):
        c = generate_code("440300", 2026).canonical
        for i in range(CODE_CHARS - 1):
            if c[i] == c[i + 1]:
                continue
            total += 1
            try:
                parse_code(c[:i] + c[i + 1] + c[i] + c[i + 2 :])
                missed += 1
            except InvalidCode:
                pass
    assert total > 7000
    assert missed / total < 0.005


@pytest.mark.parametrize(
    "bad", ["", "44030026", "4403002612345678901", "X" * 19, "440300-26-ÄBCDE-FGHIJ-K", "1" * 65]
)
def test_malformed_codes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidCode):
        parse_code(bad)


def test_revocation_subject() -> None:
    c = generate_code("440300", 2026)
    expected = hashlib.sha256(b"jianzheng/report-code/" + c.canonical.encode()).digest()
    assert revocation_subject(c.printed.lower()) == expected


def test_issuance_cache_keeps_facts_per_object() -> None:
    from service.domain.reports import IssuanceCache, ProjectRef

    cache = IssuanceCache(max_projects=2)
    mine = ProjectRef("P1", "LAB-A", "project", "aa" * 32)
    cache.put_project(mine)
    assert cache.known("LAB-A", "P1") is None  # the region is not known yet
    cache.put_region("LAB-A", "440300")
    assert cache.known("LAB-A", "P1") == (mine, "440300")
    assert cache.project("LAB-B", "P1") is None  # another lab's project
    cache.put_project(ProjectRef("S1", "LAB-A", "sample", "bb" * 32))
    assert cache.project("LAB-A", "S1") is None and cache.get_project("S1") is not None
    cache.put_project(ProjectRef("P2", "LAB-A", "project", "cc" * 32))  # full: starts over
    assert cache.get_project("P1") is None and cache.project("LAB-A", "P2") is not None
    cache.forget_project("P2")
    assert cache.get_project("P2") is None
    assert IssuanceCache().region("LAB-A") is None  # nothing shared between caches


# --------------------------------------------------------------------------- 10,000 codes


def _issue_many(url: str, institution: str, project_id: str, worker: int, n: int) -> list[str]:
    from service.domain.reports import IssuanceCache, issue_code
    from service.storage.db import make_engine, make_sessionmaker

    engine = make_engine(url, pool_size=1)
    sessions = make_sessionmaker(engine)
    cache = IssuanceCache()
    out = []
    try:
        for i in range(n):
            with sessions() as s:
                res = issue_code(
                    s, cache=cache, institution=institution, report_no=f"W{worker}-{i:06d}",
                    project_id=project_id, base_url="http://x",
                )
                s.commit()
            out.append(res["code"])
    finally:
        engine.dispose()
    return out


@pytest.mark.postgres
@pytest.mark.slow
def test_10000_codes_from_two_processes_are_distinct_and_valid(
    pg_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import func, select

    from service.state import build_state
    from service.storage.models import ReportCode
    from tests.fixtures.db import make_settings
    from tests.labkit import add_lab, seed_record

    state = build_state(make_settings(tmp_path, pg_url), chain=None)
    lab = add_lab(state, 1)
    project = seed_record(state, lab.institution or "", "project")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        parts = pool.starmap(
            _issue_many, [(pg_url, lab.institution, project, w, 5000) for w in range(2)]
        )
    codes = parts[0] + parts[1]
    assert len(codes) == 10_000
    assert len(set(codes)) == 10_000
    for c in codes:
        assert parse_code(c).canonical == c
        assert c.startswith("440300")
    with state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ReportCode)) == 10_000
    state.engine.dispose()
