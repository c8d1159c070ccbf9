"""The public page in a real browser (Debian's Chromium via Playwright) at a 375×812 phone
viewport: genuine, revoked, superseded, pending, tampered and unknown codes show the right
status and Chinese text; the English switch works; screenshots go to test-artifacts/.

The service runs as its own process; the anchoring worker as another, stopped before the
pending report is issued so that one stays pending.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from tests.anchoring_support import wait_for
from tests.browser_kit import VIEWPORT
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.chain import DevChain, new_chain
from tests.public_kit import make_pdf, privacy_findings
from tests.recordkit import (
    VALID_ID_NUMBER,
    ago,
    created,
    data_body,
    sample_body,
    today_cst,
)
from tests.story_support import (
    PUBLIC_RESPONSES,
    ServiceProcess,
    Story,
    build_story,
    fetch_bundle,
)
from verifier.canonical import canonicalize

pytestmark = [pytest.mark.chain, pytest.mark.browser]

UNKNOWN_CODE = "44030026AAAAAAAAAAAAAAA"

#: status key -> (data-status, big Chinese label, a Chinese sentence the page must show)
EXPECTED = {
    "genuine": ("genuine", "真实有效", "报告与平台存证一致"),
    # genuine, but with custody gaps and an uncited test record: an amber notice (§7.2)
    "warned": ("genuine", "真实有效", "报告与平台存证一致"),
    "revoked": ("revoked", "已作废", "该报告已被出具机构作废"),
    "superseded": ("superseded", "已更正", "请以新报告为准"),
    "pending": ("pending_anchor", "待上链", "正在等待区块链存证确认"),
    "tampered": ("tampered", "数据异常", "数据异常环节"),
    "unknown": ("unknown", "未找到", "平台未签发该标识码"),
}


@dataclass
class World:
    service: ServiceProcess
    codes: dict[str, str]
    stories: dict[str, Story]


@pytest.fixture(scope="module")
def world(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("browser")
    chain = new_chain(hardhat)
    service = ServiceProcess(tmp / "var", chain, hardhat.service_key, worker_in_serve=False)
    PUBLIC_RESPONSES.clear()
    try:
        lab_account = service.add_lab(64)
        auditor = service.client(service.add_auditor())
        agency = service.client(service.add_agency())
        service.start()
        lab = service.client(lab_account)
        # the supervision agency verified the witness: no witness_unverified on these pages
        stories = {key: build_story(lab, f"BR{i}", agency=agency) for i, key in
                   enumerate(("genuine", "revoked", "superseded", "new", "tampered"))}
        stories["warned"] = _warned_story(lab, stories["genuine"])
        r = lab.post(f"/api/v1/reports/{stories['revoked'].code}/revocation",
                     json_body={"reason": "数据录入错误", "superseded_by": None})
        assert r.status_code == 201, r.text
        r = lab.post(f"/api/v1/reports/{stories['superseded'].code}/revocation",
                     json_body={"reason": "结论更正", "superseded_by": stories["new"].code})
        assert r.status_code == 201, r.text
        service.start_worker()
        for story in stories.values():
            fetch_bundle(auditor, story.code)  # anchored, revocations on chain
        service.stop_worker()
        # the worker is gone: stays pending
        stories["pending"] = build_story(lab, "BR9", agency=agency)
        tampered = stories["tampered"].ids["receipt"]
        assert service.state is not None
        with service.state.engine.begin() as conn:
            canonical = conn.execute(text("SELECT canonical FROM records WHERE id = :id"),
                                     {"id": tampered}).scalar_one()
            obj = json.loads(canonical)
            obj["body"]["seal_intact"] = False
            conn.execute(text("UPDATE records SET canonical = :c WHERE id = :id"),
                         {"c": canonicalize(obj), "id": tampered})
        codes = {key: s.code for key, s in stories.items() if key != "new"}
        codes["unknown"] = UNKNOWN_CODE
        w = World(service, codes, stories)
        wait_for(lambda: service.public_json(codes["genuine"])["status"] == "genuine", 30,
                 "genuine")
        yield w
    finally:
        service.close()


def _warned_story(lab: Any, base: Story) -> Story:
    """A report on a sample with no seal, witness record or receipt, citing the retest of
    it and not the first test."""
    chain = base.chain
    bare = created(lab.post("/api/v1/samples",
                            json_body=sample_body(chain.commission, "YP20261122WARN")))
    first = created(lab.post("/api/v1/test-records", json_body=data_body(
        chain, ago(120), parents=[bare], results={"strength_MPa": 21.4})))
    retest = created(lab.post("/api/v1/test-records", json_body=data_body(
        chain, ago(60), parents=[bare], results={"strength_MPa": 35.2},
        retest_reason="复检：首组试块缺角")))
    code = lab.issue_code("BG-2026-BRW", chain.project).json()["code"]
    r = lab.put(f"/api/v1/reports/{code}", json_body={
        "conclusion": "pass", "issued_on": today_cst(), "approver": "王五",
        "parents": [bare, retest]})
    assert r.status_code == 200, r.text
    pdf = make_pdf(2, "检测报告 BRW")
    r = lab.put(f"/api/v1/reports/{code}/pdf", content=pdf, content_type="application/pdf")
    assert r.status_code == 200, r.text
    return Story(code, chain, {"sample": bare, "first": first, "retest": retest}, pdf, r.json())


@pytest.mark.parametrize("key", list(EXPECTED))
def test_page_shows_status_on_a_phone(world: World, browser: Any, key: str) -> None:
    status, label, sentence = EXPECTED[key]
    url = f"{world.service.base_url}/v/{world.codes[key]}"
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="zh-CN")
    page = context.new_page()
    try:
        response = page.goto(url, wait_until="load")
        assert response is not None
        assert response.status == (404 if key == "unknown" else 200)
        PUBLIC_RESPONSES.append((url, page.content()))
        box = page.locator("#status")
        assert box.get_attribute("data-status") == status
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert box.locator(".big").inner_text().strip() == label
        assert sentence in box.inner_text()
        # the status box is on screen without scrolling, and nothing is wider than the phone
        bounds = box.bounding_box()
        assert bounds is not None and bounds["y"] + bounds["height"] <= VIEWPORT["height"]
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
        if key == "tampered":
            assert page.locator("#problem [data-step]").get_attribute("data-step") == "receipt"
            assert "收样验封" in page.locator("#problem").inner_text()
        if key == "superseded":
            link = page.locator("#superseded-link")
            assert link.inner_text().replace("-", "").replace(" ", "") == \
                world.stories["new"].code
        if key in ("genuine", "revoked", "superseded", "tampered"):
            assert "检测报告" in page.inner_text("body")
        if key == "warned":
            notice = page.locator("#warnings")
            assert notice.get_attribute("data-evidence-complete") == "false"
            codes = notice.locator("li").evaluate_all("els => els.map(e => e.dataset.code)")
            assert codes == ["custody_seal_missing", "custody_witness_missing",
                             "custody_receipt_missing", "test_record_uncited"]
            assert "没有收样验封记录" in notice.inner_text()
            # right under the status box, and the uncited record is marked in the chain
            status_box, notice_box = box.bounding_box(), notice.bounding_box()
            assert status_box is not None and notice_box is not None
            assert notice_box["y"] >= status_box["y"] + status_box["height"]
            assert page.locator("[data-uncited]").count() == 1
            assert "复检：首组试块缺角" in page.inner_text("#chain")
        elif key != "unknown":
            assert page.locator("#warnings").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"browser-{key}.png"), full_page=True)
        page.screenshot(path=str(ARTIFACTS / f"browser-{key}-fold.png"))
    finally:
        context.close()


def test_english_switch(world: World, browser: Any) -> None:
    context = browser.new_context(viewport=VIEWPORT, is_mobile=True, locale="zh-CN")
    page = context.new_page()
    try:
        page.goto(f"{world.service.base_url}/v/{world.codes['revoked']}")
        page.click("#lang")
        page.wait_for_load_state("load")
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("#status .big").inner_text().strip() == "Revoked"
        PUBLIC_RESPONSES.append((page.url, page.content()))
    finally:
        context.close()


#: Personal data the stories plant (tests/recordkit.py, build_story) beyond what
#: privacy_findings knows: the witness's name and ID number.
PLANTED = ("张三", VALID_ID_NUMBER)


def test_no_page_leaks_personal_data(world: World, browser: Any) -> None:
    """Every public page (each status, Chinese and English, as the browser renders it) and
    every public JSON answer carries no unmasked personal data. The test fetches what it
    scans itself, so it holds when run alone; pages other tests kept are scanned as well."""
    scanned: list[tuple[str, str]] = []
    context = browser.new_context(viewport=VIEWPORT, is_mobile=True, locale="zh-CN")
    try:
        page = context.new_page()
        for key, code in world.codes.items():
            expected_status = 404 if key == "unknown" else 200
            for lang in ("zh", "en"):
                url = f"{world.service.base_url}/v/{code}?lang={lang}"
                response = page.goto(url, wait_until="load")
                assert response is not None and response.status == expected_status, url
                scanned.append((url, page.content()))
            r = world.service.public_get(f"/api/v1/public/reports/{code}")
            assert r.status_code == expected_status, r.text
            scanned.append((str(r.url), r.text))
    finally:
        context.close()
    assert len(scanned) == 3 * len(EXPECTED)
    # Not vacuous: the pages do show the people (approver, witness), masked.
    genuine = next(body for what, body in scanned if world.codes["genuine"] in what)
    assert "王*" in genuine and "张*" in genuine
    leaks = [
        (what, found)
        for what, body in scanned + PUBLIC_RESPONSES
        if (found := privacy_findings(body) + [s for s in PLANTED if s in body])
    ]
    assert leaks == []


def test_api_docs_render_without_a_cdn(world: World, browser: Any) -> None:
    """/docs renders the OpenAPI document in Chromium with no request leaving the host:
    Swagger UI comes from the service itself, and it reads our OpenAPI 3.1 document."""
    page = browser.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith(world.service.base_url) else None)
    try:
        page.goto(f"{world.service.base_url}/docs", wait_until="networkidle")
        page.wait_for_selector(".opblock", timeout=20_000)
        text = page.inner_text("body")
        assert "/api/v1/report-codes" in text and "Jianzheng" in text
        assert "Unable to render" not in text
        assert outside == []
    finally:
        page.close()
