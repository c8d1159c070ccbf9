"""The console in a real browser (Debian's Chromium via Playwright) at a 1440×900 desktop
viewport, against the service on PostgreSQL with the anchoring worker on a Hardhat chain:
sign in with password and TOTP; the overview draws its charts (canvases with drawn pixels)
beside tables holding the seeded numbers, the same as `GET /api/v1/audit/stats`; search
finds a report by each field; the drill-down shows the chain; the evidence bundle, sealed
PDF, CSV and XLSX exports download and hold what they should; the access log lists the
views; an agency records a handling step on a nonconforming result;
sign-out ends the session; a Beijing auditor, signing in with the keyboard on a tablet-sized
window, sees none of Shenzhen. Screenshots of each page
go to test-artifacts/console-*.png.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.client import JianzhengClient
from service.domain.public.presentation import display_code
from tests.console_kit import Person, Seeded, add_person, expected_counts, seed
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import state_with_chain
from tests.fixtures.server import served
from tests.story_support import fetch_bundle

pytestmark = [pytest.mark.chain, pytest.mark.browser, pytest.mark.postgres]

VIEWPORT = {"width": 1440, "height": 900}
CHARTS = ("day", "week", "month", "institution", "test_item")

_DRAWN_PIXELS = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) { n++; } }
  return n;
}"""


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def _sign_in(page: Any, base: str, person: Person, shot: str | None = None) -> None:
    page.goto(base + "/console/")
    assert page.url.startswith(base + "/console/login?next=")
    page.fill("#login", person.login)
    page.fill("#password", person.password)
    page.fill("#totp", person.code())
    if shot:
        _shot(page, shot)
    page.click("#signin")
    page.wait_for_url(base + "/console/")


def _result_codes(page: Any) -> set[str]:
    return set(page.eval_on_selector_all("#results tbody tr[data-code]",
                                         "rows => rows.map(r => r.dataset.code)"))


def _search(page: Any, base: str, field: str, value: str) -> set[str]:
    page.goto(base + "/console/reports")
    if field in ("conclusion", "status"):
        page.select_option(f"select[name={field}]", value)
    else:
        page.fill(f"input[name={field}]", value)
    page.click("#do-search")
    page.wait_for_load_state()
    return _result_codes(page)


def test_console_in_chromium(hardhat: DevChain, pg_url: str, tmp_path: Path,
                             browser: Any) -> None:  # noqa: F811
    state = state_with_chain(tmp_path, pg_url, new_chain(hardhat),
                             anchor={"batch_max_age_s": 0.2, "poll_interval_s": 0.05})
    app = create_app(state.settings, state=state, start_worker=True)
    try:
        seeded = seed(state, app)
        agency = add_person(state, "深圳市建设工程质量监督站", "440300", kind="agency",
                            login="sz.agency")
        beijing = add_person(state, "北京市住房和城乡建设委员会", "110000", kind="auditor",
                             login="bj.auditor")
        with served(app) as base:
            _run(browser, base, seeded, agency, beijing)
    finally:
        state.engine.dispose()


def _run(chromium: Any, base: str, seeded: Seeded, agency: Person, beijing: Person) -> None:
    context = chromium.new_context(viewport=VIEWPORT, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400
            else None)

    # --- sign in with password and TOTP
    _sign_in(page, base, agency, shot="login")
    assert "深圳市建设工程质量监督站" in page.inner_text("#who")

    # --- overview: drawn charts, tables with the seeded numbers, the same as the API
    for key in CHARTS:
        page.wait_for_selector(f"#chart-{key}[data-drawn]")
        assert page.evaluate(_DRAWN_PIXELS, f"chart-{key}") > 500, key
    expected = expected_counts(seeded, "44")
    assert page.inner_text("#kpi-total") == str(expected["total"])
    assert page.inner_text("#kpi-fail") == str(expected["fail"])
    signed = JianzhengClient(base, agency.key.key_id, agency.key.secret, timeout=60)
    for dimension in ("institution", "test_item"):
        api = signed.get("/api/v1/audit/stats", query={"dimension": dimension})
        assert api.status_code == 200, api.text
        rows = page.eval_on_selector_all(
            f"#table-{dimension} tbody tr[data-key]",
            "rs => rs.map(r => [r.dataset.key, ...[...r.cells].map(c => c.innerText)])")
        shown = {r[0]: [int(r[2]), int(r[3]), int(r[4])] for r in rows}
        assert shown == {r["key"]: [r["total"], r["pass"], r["fail"]]
                         for r in api.json()["rows"]}
    truth: dict[str, list[int]] = {}
    for _inst, conclusion, item, region in seeded.reports.values():
        if region.startswith("44"):
            t = truth.setdefault(item, [0, 0, 0])
            t[0] += 1
            t[1 if conclusion == "pass" else 2] += 1
    assert shown == truth  # the last dimension: test items
    assert "SZ1-2026-0004" in page.inner_text("#panel-numbering")
    # the filter buttons keep their labels on one line (as tall as the one-line sign-out)
    heights = page.evaluate("""() => ['#apply-filters', '#logout'].map(
        s => document.querySelector(s).getBoundingClientRect().height)""")
    assert heights[0] <= heights[1] + 1, heights
    _shot(page, "overview")

    # --- search by each field
    sz = {c: v for c, v in seeded.reports.items() if v[3].startswith("44")}
    code = seeded.sealed
    assert _search(page, base, "code", display_code(code).lower().replace(" ", "-")) == {code}
    assert _search(page, base, "report_no", seeded.report_nos[code]) == {code}
    sz2 = seeded.labs["sz2"].institution
    assert _search(page, base, "project", "sz2 综合楼工程") == {c for c, v in sz.items()
                                                            if v[0] == sz2}
    assert _search(page, base, "institution", sz2 or "") == {c for c, v in sz.items()
                                                           if v[0] == sz2}
    assert _search(page, base, "test_item", "钢筋拉伸") == {c for c, v in sz.items()
                                                        if v[2] == "钢筋拉伸"}
    fails = {c for c, v in sz.items() if v[1] == "fail"}
    assert _search(page, base, "status", "reported") == set(sz)
    assert _search(page, base, "conclusion", "fail") == fails
    _shot(page, "search")
    with page.expect_download() as dl:
        page.click("#export-csv")
    text = Path(dl.value.path()).read_text("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["报告标识码"] for r in rows} == fails
    with page.expect_download() as dl:
        page.click("#export-xlsx")
    from openpyxl import load_workbook

    assert dl.value.suggested_filename == "jianzheng-reports.xlsx"
    sheet = load_workbook(io.BytesIO(Path(dl.value.path()).read_bytes()), read_only=True)["报告"]
    assert {r[0] for r in list(sheet.iter_rows(values_only=True))[1:]} == fails
    today = page.evaluate("() => new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10)")
    page.goto(f"{base}/console/reports?from={today}&to={today}")
    assert _result_codes(page) == {c for c, n in seeded.report_nos.items()
                                   if n in ("SZ1-2026-0001", "SZ2-2026-0001")}

    # --- drill-down: the chain, anchored; the bundle and the sealed PDF download
    fetch_bundle(signed, code)  # waits until every record is anchored
    page.goto(f"{base}/console/reports/{code}")
    steps = page.eval_on_selector_all("#chain li", "ls => ls.map(l => l.dataset.type + ':' "
                                      "+ l.dataset.check)")
    types = [s.split(":")[0] for s in steps]
    for needed in ("project", "contract", "commission", "sample", "seal", "witness", "receipt",
                   "test_record", "report"):
        assert needed in types, (needed, steps)
    assert all(s.endswith(":verified") for s in steps), steps
    assert page.get_attribute("#status", "data-status") == "genuine"
    assert page.inner_text("#report-no") == seeded.report_nos[code]
    _shot(page, "report")
    with page.expect_download() as dl:
        page.click("#dl-bundle")
    with zipfile.ZipFile(dl.value.path()) as z:
        assert "manifest.json" in z.namelist()
    with page.expect_download() as dl:
        page.click("#dl-pdf")
    assert Path(dl.value.path()).read_bytes().startswith(b"%PDF")

    # --- the access log: the view and both downloads
    page.click("nav >> text=访问日志")
    actions = page.eval_on_selector_all("#access-log td[data-action]",
                                        "cs => cs.map(c => c.dataset.action)")
    assert {"view_report", "download_bundle", "download_pdf"} <= set(actions)
    _shot(page, "access-log")

    # --- the agency records a handling step on a nonconforming result (a CSRF-bound form)
    failed = sorted(fails)[0]
    page.goto(f"{base}/console/reports/{failed}")
    page.select_option("#ledger-action", "retest_ordered")
    page.fill("#ledger-note", "已责令施工单位对同批次钢筋重新见证取样复检")
    page.click("#ledger-submit")
    page.wait_for_selector('#ledger-steps tr[data-action="retest_ordered"]')
    _shot(page, "ledger")
    page.goto(base + "/console/")
    assert page.get_attribute(f'#panel-nonconforming tr[data-code="{failed}"]',
                              "data-closed") == "false"
    assert "责令复检" in page.inner_text(f'#panel-nonconforming tr[data-code="{failed}"]')

    # --- sign-out ends the session
    page.click("#logout")
    page.wait_for_url(base + "/console/login")
    page.goto(base + "/console/reports")
    assert "/console/login?next=" in page.url
    assert not problems, problems
    context.close()

    # --- a Beijing auditor on a tablet (1024×768), signing in with the keyboard only: its
    # region only
    context = chromium.new_context(viewport={"width": 1024, "height": 768}, locale="zh-CN")
    page = context.new_page()
    page.goto(base + "/console/")
    page.keyboard.type(beijing.login)  # the login field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(beijing.password)
    page.keyboard.press("Tab")
    page.keyboard.type(beijing.code())
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/console/")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1024
    bj = expected_counts(seeded, "11")
    page.wait_for_selector("#chart-institution[data-drawn]")
    assert page.inner_text("#kpi-total") == str(bj["total"])
    assert page.inner_text("#kpi-fail") == str(bj["fail"])
    text = page.content()
    for c in sz:
        assert c not in text and display_code(c) not in text
    _shot(page, "overview-beijing-tablet")
    page.goto(f"{base}/console/reports?code={code}")
    assert _result_codes(page) == set()
    page.goto(f"{base}/console/reports/{code}")
    assert page.inner_text("#msg-title") == "未找到"
    context.close()
