"""The regulators' console (issue 14) over HTTP: TOTP against RFC 6238's vectors; sign-in
with password and TOTP, cookie attributes, throttling, CSRF, sign-out and idle expiry;
every console route (listed from the app) redirects without a session, and bounds what it
shows to the account's region for agencies and auditors alike; the statistics API gives
the overview's numbers; the access log is written and its supervisors read it."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from service.domain.console import auth
from service.domain.public.presentation import display_code
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from tests.console_kit import (
    Person,
    Seeded,
    add_person,
    csrf_of,
    expected_counts,
    seed,
    sign_in,
    signed_in,
)
from tests.fixtures.db import make_settings
from tests.labkit import all_routes, client_for, make_app

# --------------------------------------------------------------------------- TOTP


#: RFC 6238 appendix B: (time, SHA-1, SHA-256, SHA-512) with the RFC's seeds, 8 digits.
RFC6238 = (
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
)
SEED20 = b"12345678901234567890"
SEED32 = SEED20 + b"123456789012"
SEED64 = SEED20 * 3 + b"1234"


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_totp_matches_rfc6238(at: int, sha1: str, sha256: str, sha512: str) -> None:
    assert auth.totp(SEED20, at, digits=8, digest="sha1") == sha1
    assert auth.totp(SEED32, at, digits=8, digest="sha256") == sha256
    assert auth.totp(SEED64, at, digits=8, digest="sha512") == sha512


def test_hotp_matches_rfc4226() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922",
                "162583", "399871", "520489"]
    assert [auth.hotp(SEED20, i) for i in range(10)] == expected


# --------------------------------------------------------------------------- world


class World:
    def __init__(self, state: ServiceState, app: FastAPI, seeded: Seeded,
                 people: dict[str, Person]) -> None:
        self.state, self.app, self.seeded, self.people = state, app, seeded, people
        self._signed: dict[str, TestClient] = {}

    def http(self, who: str) -> TestClient:
        """A signed-in client of `who`, kept for the module (a TOTP code is good once, so
        signing in again and again would wait for new time steps)."""
        if who not in self._signed:
            self._signed[who] = signed_in(self.app, self.people[who])
        return self._signed[who]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("console")
    state = build_state(make_settings(tmp, f"sqlite:///{tmp / 'jz.db'}"), chain=None)
    app = make_app(state)
    seeded = seed(state, app)
    people = {
        "sz_agency": add_person(state, "深圳市建设工程质量监督站", "440300", kind="agency",
                                login="sz.agency"),
        "bj_agency": add_person(state, "北京市监督站", "110000", kind="agency",
                                login="bj.agency"),
        "sz_auditor": add_person(state, "深圳审计", "440300", kind="auditor",
                                 login="sz.auditor"),
        "bj_auditor": add_person(state, "北京审计", "110000", kind="auditor",
                                 login="bj.auditor"),
        "gd_auditor": add_person(state, "广东省住建厅", "440000", kind="auditor",
                                 login="gd.auditor"),
        "throttled": add_person(state, "锁定测试", "440300", kind="agency", login="locked"),
        "idle": add_person(state, "超时测试", "440300", kind="agency", login="idle"),
        "leaver": add_person(state, "退出测试", "440300", kind="agency", login="leaver"),
    }
    yield World(state, app, seeded, people)
    state.engine.dispose()


def _raw(world: World) -> TestClient:
    return TestClient(world.app, base_url="http://testserver", raise_server_exceptions=True)


# --------------------------------------------------------------------------- sign-in


def test_sign_in_needs_password_and_totp_and_sets_a_strict_cookie(world: World) -> None:
    person = world.people["sz_auditor"]
    http = _raw(world)
    assert sign_in(http, person, password="wrong-password-123").status_code == 401
    assert sign_in(http, person, code="000000").status_code == 401
    r = sign_in(http, person)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(v for k, v in r.headers.multi_items()
                  if k == "set-cookie" and v.startswith("jz_console="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/console" in lowered
    assert "secure" not in lowered  # development; outside it the flag is set (_secure)
    page = http.get("/console/")
    assert page.status_code == 200 and "辖区总览" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_a_totp_code_is_good_once(world: World) -> None:
    person = world.people["bj_auditor"]
    code = person.code()
    assert sign_in(_raw(world), person, code=code).status_code == 303
    assert sign_in(_raw(world), person, code=code).status_code == 401


def test_sign_in_is_throttled(world: World) -> None:
    person = world.people["throttled"]
    http = _raw(world)
    limit = world.state.settings.console.signin_max_failures
    for _ in range(limit):
        assert sign_in(http, person, password="not-the-password-1").status_code == 401
    r = sign_in(http, person)  # right password and code: still refused
    assert r.status_code == 429, r.text
    assert "次数过多" in r.text and int(r.headers["retry-after"]) > 0


def test_forged_or_missing_csrf_is_refused(world: World) -> None:
    person = world.people["sz_agency"]
    http = _raw(world)
    http.get("/console/login")
    r = http.post("/console/login", data={"login": person.login, "password": person.password,
                                          "totp": person.code(), "csrf": "forged"})
    assert r.status_code == 403
    r = http.post("/console/login", data={"login": person.login, "password": person.password,
                                          "totp": person.code()})
    assert r.status_code == 403
    user = world.http("sz_agency")
    assert user.post("/console/logout", data={"csrf": "forged"}).status_code == 403
    assert user.post("/console/logout", data={}).status_code == 403
    assert user.get("/console/").status_code == 200  # still signed in


def test_sign_out_ends_the_session(world: World) -> None:
    http = signed_in(world.app, world.people["leaver"])
    page = http.get("/console/")
    token = http.cookies.get("jz_console")
    r = http.post("/console/logout", data={"csrf": csrf_of(page.text)},
                  follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    # the old cookie, sent again, is dead
    replay = _raw(world)
    replay.cookies.set("jz_console", token or "", path="/console")
    r = replay.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_idle_and_old_sessions_end(world: World) -> None:
    person = world.people["idle"]
    cfg = world.state.settings.console

    def code(at: float) -> str:
        return auth.totp(person.secret, at)

    with session_scope(world.state.sessions) as s:
        now = time.time()
        signed = auth.sign_in(s, world.state.settings, login=person.login,
                              password=person.password, code=code(now), ip="t", now=now)
        assert auth.current_user(s, world.state.settings, signed.token, now + 10) is not None
        # used at now + 10: idle from then on
        later = now + 10 + cfg.idle_timeout_s + 1
        assert auth.current_user(s, world.state.settings, signed.token, later) is None
        assert auth.current_user(s, world.state.settings, signed.token, now + 20) is None
    with session_scope(world.state.sessions) as s:
        now = time.time() + 3600  # a later time step (this account's codes: only here)
        signed = auth.sign_in(s, world.state.settings, login=person.login,
                              password=person.password, code=code(now), ip="t", now=now)
        t = now
        while t < now + cfg.max_session_s:  # kept busy, still ends at the maximum age
            t += cfg.idle_timeout_s - 1
            alive = auth.current_user(s, world.state.settings, signed.token, t)
            assert (alive is not None) == (t - now <= cfg.max_session_s)


def test_set_credentials_refuses_weak_passwords_and_taken_logins(world: World) -> None:
    from service.errors import Invalid

    person = world.people["bj_agency"]
    with session_scope(world.state.sessions) as s:
        with pytest.raises(Invalid) as bad:
            auth.set_credentials(s, world.state.settings, account_id=person.account_id,
                                 login="bj.agency", password="short")
        assert bad.value.code == "invalid_password"
        with pytest.raises(Invalid) as taken:
            auth.set_credentials(s, world.state.settings, account_id=person.account_id,
                                 login="sz.agency", password="a-long-enough-password")
        assert taken.value.code == "login_taken"


# --------------------------------------------------------------------------- authorisation


def _console_get_paths(app: FastAPI, code: str) -> list[str]:
    paths = []
    for route in all_routes(app):
        if isinstance(route, APIRoute) and route.path.startswith("/console") \
                and "GET" in route.methods and route.path not in ("/console", "/console/login"):
            path = route.path.replace("{code}", code).replace("{name:path}", "console.css")
            paths += [path.replace("{fmt}", f) for f in ("csv", "xlsx")] if "{fmt}" in path \
                else [path]
    return paths


def test_every_console_route_needs_a_session(world: World) -> None:
    code = next(iter(world.seeded.reports))
    paths = _console_get_paths(world.app, code)
    assert len(paths) >= 8, paths
    http = _raw(world)
    for path in paths:
        r = http.get(path, follow_redirects=False)
        if path.startswith("/console/static/"):
            assert r.status_code == 200  # the style sheet and chart library are public
            continue
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/login?next="), path
    r = http.post("/console/logout", data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 303


def test_a_lab_key_cannot_reach_the_console(world: World) -> None:
    lab = world.seeded.labs["sz1"]
    with client_for(world.app, lab) as c:
        r = c.get("/console/")  # a signed request is no session: to the sign-in page
        assert r.url.path == "/console/login" and "监管端登录" in r.text
        r = c.get("/api/v1/audit/stats")
        assert r.status_code == 403 and r.json()["code"] == "forbidden"


@pytest.mark.parametrize("who", ["sz_agency", "sz_auditor", "bj_agency", "bj_auditor"])
def test_each_account_sees_only_its_region(world: World, who: str) -> None:
    person = world.people[who]
    assert person.region is not None
    prefix = person.region[:2]
    mine = {c for c, v in world.seeded.reports.items() if v[3].startswith(prefix)}
    others = set(world.seeded.reports) - mine
    assert mine and others
    http = world.http(who)
    # every GET route, with a report of the other region: nothing of it
    other = sorted(others)[0]
    for path in _console_get_paths(world.app, other):
        if path.startswith("/console/static/"):
            continue
        r = http.get(path)
        if other in path:
            assert r.status_code == 404, (path, r.status_code)
        body = r.text
        for code in others:
            assert code not in body and display_code(code) not in body, (who, path)
            assert world.seeded.report_nos[code] not in body, (who, path)
        for inst in {world.seeded.reports[c][0] for c in others}:
            assert inst not in body, (who, path)
    # the search finds all of its own and counts right
    r = http.get("/console/reports", params={"per_page": 100})
    assert f"共 <b>{len(mine)}</b> 份报告" in r.text
    for code in mine:
        assert code in r.text
    expected = expected_counts(world.seeded, prefix)
    page = http.get("/console/").text
    assert f'id="kpi-total">{expected["total"]}<' in page
    assert f'id="kpi-fail">{expected["fail"]}<' in page
    # exports hold the region's rows only
    rows = list(csv.DictReader(io.StringIO(http.get("/console/reports.csv").text.lstrip("\ufeff"))))
    assert {r["报告标识码"] for r in rows} == mine
    assert {r[0] for r in _xlsx_rows(http.get("/console/reports.xlsx").content)} == mine
    # the statistics API, signed with the same account's key, counts the same
    with client_for(world.app, person.key) as c:
        stats = c.get("/api/v1/audit/stats", query={"dimension": "institution"}).json()
    assert stats["totals"]["total"] == expected["total"]
    assert stats["totals"]["fail"] == expected["fail"]
    assert {r["key"] for r in stats["rows"]} <= {world.seeded.reports[c][0] for c in mine}


# --------------------------------------------------------------------------- numbers


def _table_rows(html: str, table_id: str) -> dict[str, list[str]]:
    part = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    out = {}
    for row in re.findall(r"<tr data-key=\"([^\"]*)\">(.*?)</tr>", part, re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row[1], re.S)
        out[row[0]] = [c.strip() for c in cells]
    return out


@pytest.mark.parametrize(("dimension", "table"), [("institution", "table-institution"),
                                                  ("test_item", "table-test_item")])
def test_stats_api_gives_the_overview_numbers(world: World, dimension: str, table: str) -> None:
    person = world.people["sz_agency"]
    page = world.http("sz_agency").get("/console/").text
    shown = _table_rows(page, table)
    with client_for(world.app, person.key) as c:
        r = c.get("/api/v1/audit/stats", query={"dimension": dimension})
    assert r.status_code == 200, r.text
    api = {row["key"]: row for row in r.json()["rows"]}
    assert set(shown) == set(api) and shown
    for key, cells in shown.items():
        assert cells[1:4] == [str(api[key]["total"]), str(api[key]["pass"]),
                              str(api[key]["fail"])]
    # and both are the seeded truth
    truth: dict[str, list[int]] = {}
    for inst, conclusion, item, region in world.seeded.reports.values():
        if not region.startswith("44"):
            continue
        key = inst if dimension == "institution" else item
        t = truth.setdefault(key, [0, 0, 0])
        t[0] += 1
        t[1 if conclusion == "pass" else 2] += 1
    assert {k: [v["total"], v["pass"], v["fail"]] for k, v in api.items()} == truth


def test_stats_api_periods_and_filters(world: World) -> None:
    person = world.people["bj_auditor"]
    with client_for(world.app, person.key) as c:
        day = c.get("/api/v1/audit/stats", query={"dimension": "period", "period": "day"})
        assert day.status_code == 200
        rows = day.json()["rows"]
        assert len(rows) == 30 and sum(r["total"] for r in rows) == 3
        assert rows[-1]["total"] == 3 and rows[-1]["fail"] == 2
        month = c.get("/api/v1/audit/stats", query={"period": "month"}).json()["rows"]
        assert len(month) == 12 and sum(r["total"] for r in month) == 3
        item = c.get("/api/v1/audit/stats", query={"dimension": "conclusion",
                                                   "test_item": "钢筋拉伸"}).json()
        assert {r["key"]: r["total"] for r in item["rows"]} == {"fail": 2}
        bad = c.get("/api/v1/audit/stats", query={"dimension": "colour"})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_filter"
        bad = c.get("/api/v1/audit/stats", query={"from": "2026-13-01"})
        assert bad.status_code == 422 and bad.json()["code"] == "validation_error"


def test_overview_filters_match_the_stats_api(world: World) -> None:
    person = world.people["sz_agency"]
    sz1 = world.seeded.labs["sz1"].institution
    assert sz1 is not None
    params = {"institution": sz1, "test_item": "钢筋拉伸"}
    page = world.http("sz_agency").get("/console/", params=params).text
    truth = [v for v in world.seeded.reports.values() if v[0] == sz1 and v[2] == "钢筋拉伸"]
    assert f'id="kpi-total">{len(truth)}<' in page
    assert f'<option value="{sz1}" selected>' in page
    shown = _table_rows(page, "table-institution")
    with client_for(world.app, person.key) as c:
        api = c.get("/api/v1/audit/stats", query={"dimension": "institution", **params}).json()
    assert {k: v[1:4] for k, v in shown.items()} == {
        r["key"]: [str(r["total"]), str(r["pass"]), str(r["fail"])] for r in api["rows"]}
    assert api["totals"]["total"] == len(truth)
    # a date range that holds nothing
    empty = world.http("sz_agency").get("/console/", params={"from": "2020-01-01",
                                                              "to": "2020-01-31"}).text
    assert 'id="kpi-total">0<' in empty


def test_overview_shows_numbering_gaps_and_nonconforming_items(world: World) -> None:
    page = world.http("sz_agency").get("/console/").text
    assert "SZ1-2026-0004" in page  # the missing number
    nc = page.split('id="panel-nonconforming"', 1)[1].split("</section>", 1)[0]
    fails = [c for c, v in world.seeded.reports.items() if v[1] == "fail" and v[3][:2] == "44"]
    for code in fails:
        assert display_code(code) in nc
    assert 'id="kpi-nc">2<' in page


# --------------------------------------------------------------------------- search


def test_search_by_each_field(world: World) -> None:
    http = world.http("sz_agency")
    seeded = world.seeded
    sz1 = [c for c, v in seeded.reports.items() if v[0] == seeded.labs["sz1"].institution]
    code = sz1[0]

    def found(**params: str) -> set[str]:
        html = http.get("/console/reports", params={**params, "per_page": "100"}).text
        return set(re.findall(r'<tr data-code="([^"]+)"', html))

    assert found(code=display_code(code).lower().replace(" ", "-")) == {code}
    assert found(report_no="SZ1-2026-0003") == {c for c in sz1
                                                if seeded.report_nos[c] == "SZ1-2026-0003"}
    assert found(project="sz2 综合楼") == {c for c, v in seeded.reports.items()
                                          if v[0] == seeded.labs["sz2"].institution}
    assert found(institution=seeded.labs["sz1"].institution or "") == set(sz1)
    assert found(test_item="钢筋拉伸") == {c for c, v in seeded.reports.items()
                                         if v[2] == "钢筋拉伸" and v[3][:2] == "44"}
    assert found(conclusion="fail") == {c for c, v in seeded.reports.items()
                                        if v[1] == "fail" and v[3][:2] == "44"}
    assert found(status="reported") == {c for c, v in seeded.reports.items()
                                        if v[3][:2] == "44"}
    assert found(status="revoked") == set()
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))
    assert len(found(**{"from": today, "to": today})) == 2  # SZ1-0001 and SZ2-0001
    # paginated and sortable
    page1 = http.get("/console/reports", params={"sort": "report_no", "order": "asc",
                                                 "per_page": "4"}).text
    nos = re.findall(r"<td>(SZ\d-2026-\d{4})</td>", page1)
    assert nos == sorted(nos) and len(nos) == 4 and 'id="next"' in page1
    page2 = http.get("/console/reports", params={"sort": "report_no", "order": "asc",
                                                 "per_page": "4", "page": "2"}).text
    assert re.findall(r"<td>(SZ\d-2026-\d{4})</td>", page2) == sorted(
        seeded.report_nos[c] for c, v in seeded.reports.items() if v[3][:2] == "44")[4:]
    # the filtered export
    rows = list(csv.DictReader(io.StringIO(
        http.get("/console/reports.csv", params={"conclusion": "fail"}).text.lstrip("\ufeff"))))
    assert {r["报告标识码"] for r in rows} == found(conclusion="fail")
    assert all(r["检测结论"] == "fail" for r in rows)
    xlsx = _xlsx_rows(http.get("/console/reports.xlsx", params={"test_item": "钢筋拉伸"}).content)
    assert {r[0] for r in xlsx} == found(test_item="钢筋拉伸")
    assert all("钢筋拉伸" in r[5] for r in xlsx)


def _xlsx_rows(data: bytes) -> list[tuple[Any, ...]]:
    """The data rows of an exported workbook (opened with openpyxl), header checked."""
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True)
    rows = list(book["报告"].iter_rows(values_only=True))
    assert rows[0][:2] == ("报告标识码", "报告编号")
    return rows[1:]


# --------------------------------------------------------------------------- drill-down


def test_report_page_is_unmasked_and_logged_for_supervisors(world: World) -> None:
    seeded = world.seeded
    http = world.http("sz_agency")
    code = seeded.sealed
    page = http.get(f"/console/reports/{code}")
    assert page.status_code == 200
    html = page.text
    assert 'data-type="sample"' in html and 'data-type="test_record"' in html
    assert "王五" in html  # the tester's full name: unmasked (the public page masks it)
    assert seeded.report_nos[code] in html and 'id="dl-pdf"' in html
    # record fields read as people write them, not as raw JSON
    assert "{&#34;name&#34;" not in html and '{"name"' not in html
    assert "承包单位" in html or "施工单位" in html
    pdf = http.get(f"/console/reports/{code}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    # the agency's own log, and its provincial supervisor's, hold both; Beijing's nothing
    for who, sees in (("sz_agency", True), ("gd_auditor", True), ("bj_auditor", False)):
        log = world.http(who).get("/console/access-log").text
        assert (display_code(code) in log) is sees, who
        if sees:
            assert 'data-action="view_report"' in log and 'data-action="download_pdf"' in log
            assert agency_name(world) in log


def agency_name(world: World) -> str:
    return "深圳市建设工程质量监督站"


# --------------------------------------------------------------------------- 处置


def test_agencies_record_handling_steps_as_evidence(world: World) -> None:
    from sqlalchemy import select

    from service.storage.models import Record, RecordParent, ReportCode

    seeded = world.seeded
    code = next(c for c, v in seeded.reports.items() if v[1] == "fail" and v[3][:2] == "44")
    agency = world.http("sz_agency")
    page = agency.get(f"/console/reports/{code}").text
    assert 'id="ledger-form"' in page and "尚无处置记录" in page
    url = f"/console/reports/{code}/ledger-actions"
    step = {"action": "retest_ordered", "note": "责令对同批钢筋重新取样复检"}
    # no session, a forged token, an auditor, another region's agency: nothing is written
    assert _raw(world).post(url, data={**step, "csrf": "x"},
                            follow_redirects=False).status_code == 303
    assert agency.post(url, data={**step, "csrf": "forged"}).status_code == 403
    auditor = world.http("sz_auditor")
    r = auditor.post(url, data={**step, "csrf": csrf_of(auditor.get("/console/").text)})
    assert r.status_code == 403 and 'id="ledger-form"' not in auditor.get(
        f"/console/reports/{code}").text
    beijing = world.http("bj_agency")
    r = beijing.post(url, data={**step, "csrf": csrf_of(beijing.get("/console/").text)})
    assert r.status_code == 404
    r = agency.post(url, data={**step, "action": "fire", "csrf": csrf_of(page)})
    assert r.status_code == 422
    # the agency's two steps
    before = agency.get("/console/").text
    assert 'id="nc-open">2<' in before and 'id="nc-closed">0<' in before
    for action, note in (("retest_ordered", step["note"]), ("closed", "复检合格，闭环")):
        r = agency.post(url, data={"action": action, "note": note, "csrf": csrf_of(page)},
                        follow_redirects=False)
        assert r.status_code == 303, r.text
    page = agency.get(f"/console/reports/{code}").text
    assert page.count('<tr data-action="') == 2 and "已闭环" in page
    assert 'id="ledger-form"' not in page  # closed: no further steps
    after = agency.get("/console/").text
    assert 'id="nc-open">1<' in after and 'id="nc-closed">1<' in after
    assert f'data-code="{code}" data-closed="true"' in after
    # each step is a ledger_action evidence record, child of the report's record
    with world.state.sessions() as s:
        report_rid = s.scalar(select(ReportCode.report_record_id).where(ReportCode.code == code))
        children = s.scalars(select(Record).join(RecordParent, RecordParent.child_id == Record.id)
                             .where(RecordParent.parent_id == report_rid,
                                    Record.type == "ledger_action")).all()
        assert len(children) == 2
        assert {b"retest_ordered" in r.canonical for r in children} == {True, False}
        assert all("深圳市建设工程质量监督站".encode() in r.canonical for r in children)


@pytest.mark.parametrize("query", [
    "page=abc&per_page=-5", "page=99999999999999999999", "per_page=100000", "sort=password",
    "order=sideways", "from=2026-02-30&to=yesterday", "code=%00%ff'--", "conclusion=maybe",
    "status=%3Cscript%3E", "institution=" + "x" * 5000, "test_item=%E2%80%AE",
])
def test_hostile_query_strings_never_fail(world: World, query: str) -> None:
    http = world.http("sz_agency")
    for path in ("/console/", "/console/reports", "/console/reports.csv",
                 "/console/reports.xlsx", "/console/access-log"):
        r = http.get(f"{path}?{query}")
        assert r.status_code == 200, (path, query, r.status_code)
        assert "<script>" not in r.text
    for code in ("%00", "x" * 300, "..%2F..%2Fetc", "44030526ZZZZZZZZZZZZZZZ"):
        assert http.get(f"/console/reports/{code}").status_code == 404
