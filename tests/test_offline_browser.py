"""The offline verifier (/offline/) in Debian's Chromium at a 375x812 phone viewport: after
one visit the service is stopped and the browser context goes offline; the page still
loads from its service worker, decodes a photo of a printed page in the browser
(zxing-wasm), verifies the ES256 signature with WebCrypto against the cached trust list and
shows the signed facts; a tampered QR shows the failure. Screenshots: test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
import segno

from service.state import build_state
from tests.fixtures.db import make_settings
from tests.fixtures.server import served
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import issue_report, sealed_bytes
from tests.qr_kit import cose_of, qr_texts
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
from tests.test_offline_qr_api import _render, degraded_photo
from verifier.qr import payload_text

pytestmark = [pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_offline_app_verifies_a_photo_with_the_network_off(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'jz.db'}",
        public={"rate_limit_per_minute": 0, "base_url": "https://jz.example.cn"},
    )
    state = build_state(settings, chain=None)
    app = make_app(state)
    lab = add_lab(state, 1)
    built = issue_report(state, client_for(app, lab), lab.institution, "B1")
    sealed = sealed_bytes(state, built)
    photo = tmp_path / "photo.jpg"
    degraded_photo(sealed, 0).convert("RGB").save(photo, format="JPEG", quality=70)
    # a QR whose payload says "fail" instead of "pass", with the original signature
    (url,) = qr_texts(_render(sealed, 0, 150))
    tagged = cbor2.loads(cose_of(url))
    facts = cbor2.loads(tagged.value[2])
    facts[4] = 1
    tagged.value[2] = cbor2.dumps(facts, canonical=True)
    forged = url.rsplit("/", 1)[0] + "/" + payload_text(cbor2.dumps(tagged, canonical=True))
    forged_png = tmp_path / "forged.png"
    segno.make(forged, error="q", boost_error=False).save(str(forged_png), scale=5, border=4)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, is_mobile=True,
                                      has_touch=True, locale="zh-CN")
        page = context.new_page()
        try:
            # 1. the first visit, online: the service worker installs and caches everything
            with served(app) as base:
                page.goto(f"{base}/offline/", wait_until="load")
                page.wait_for_function(
                    "navigator.serviceWorker.controller !== null || "
                    "navigator.serviceWorker.ready.then(() => true)", timeout=20_000)
                page.wait_for_function(
                    "caches.open('jz-offline-v1').then(c => c.keys())"
                    ".then(k => k.length >= 9 ? true : false)", timeout=20_000, polling=200)
                cached = page.evaluate(
                    "caches.open('jz-offline-v1').then(c => c.keys())"
                    ".then(k => k.map(r => new URL(r.url).pathname))")
                assert "/ca/trust-list.json" in cached
                assert "/offline/vendor/zxing_reader.wasm" in cached
            # 2. the service is gone and the phone is offline
            context.set_offline(True)
            page.reload(wait_until="load")
            assert page.locator("html").get_attribute("lang") == "zh-CN"
            page.wait_for_selector("#trust[data-ready='1']", timeout=20_000)
            assert page.locator("#net").inner_text() == "离线"
            page.screenshot(path=str(ARTIFACTS / "offline-start.png"))

            # 3. a photo of the printed page: verified, with the facts and the guidance
            page.set_input_files("#photo", str(photo))
            page.wait_for_selector("#verdict[data-result='valid']", timeout=60_000)
            text = page.inner_text("#result")
            assert "平台签名有效" in text
            assert "BG-2026-B1" in text and lab.institution in text
            assert "合格" in text and "2026-11-22" in text
            assert "以纸质报告上的内容核对" in text
            assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
            page.screenshot(path=str(ARTIFACTS / "offline-valid.png"), full_page=True)

            # 4. a tampered QR: the signature fails
            page.set_input_files("#photo", str(forged_png))
            page.wait_for_selector("#verdict[data-result='invalid']", timeout=60_000)
            text = page.inner_text("#result")
            assert "签名无效" in text and "签名验证失败" in text
            page.screenshot(path=str(ARTIFACTS / "offline-tampered.png"), full_page=True)
        finally:
            context.close()
            browser.close()
    state.engine.dispose()
