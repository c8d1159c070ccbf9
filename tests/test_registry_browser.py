"""The public page's registry statements in Chromium at a 375×812 phone viewport: a report
whose project the agency entered and whose witness it verified, and one resting on the lab's
word alone, loaded from the running service as a phone loads them (so the key photo is
fetched and must decode). Screenshots go to test-artifacts/registry-*.png."""

from __future__ import annotations

from typing import Any

import pytest

from service.clock import utc_now
from service.state import ServiceState
from tests.browser_kit import VIEWPORT
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.server import served
from tests.labkit import add_agency, add_lab, client_for, make_app
from tests.recordkit import Chain, ago, build_chain, created, data_body, register_staff

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_who_vouched_shows_on_a_phone(app_state: ServiceState, browser: Any) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 138)
    agency = add_agency(app_state)
    pages: dict[str, str] = {}  # key -> report code
    with client_for(app, agency) as a, client_for(app, lab) as c:
        entry = a.post("/api/v1/agency/projects", json_body={
            "institution": lab.institution,
            "project": {"name": "深圳湾科技园3号楼", "location": "深圳市南山区科苑南路",
                        "construction_unit": {"name": "深圳湾建设有限公司"}},
        }).json()["record_id"]
        vouched = build_chain(c, sample_code="YP-BRW-V", agency=a,
                              project_fields={"registered_project": entry})
        plain = build_chain(c, sample_code="YP-BRW-L")

        def report(ch: Chain, no: str) -> str:
            test = created(c.post("/api/v1/test-records", json_body=data_body(ch, ago(300))))
            code = str(c.issue_code(no, ch.project).json()["code"])
            meta = {"conclusion": "pass", "approver": "王五",
                    "issued_on": utc_now().date().isoformat(), "parents": [ch.sample, test]}
            assert c.put(f"/api/v1/reports/{code}", json_body=meta).status_code == 200
            return code

        for key, chain in (("lab-only", plain), ("verified", vouched)):
            if key == "verified":  # the approver registered between the two reports
                register_staff(a, lab.institution or "", roles=("tester", "approver"),
                               signing_scope=("混凝土抗压强度",))
            code = report(chain, f"BG-BRW-{key}")
            assert c.http.get(f"/v/{code}").status_code == 200
            pages[key] = code
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    try:
        with served(app) as base:
            for key, code in pages.items():
                _check_page(context, base, key, code)
    finally:
        context.close()


def _check_page(context: Any, base: str, key: str, code: str) -> None:
    """The page as a phone loads it from the service: its key photo decodes too."""
    page = context.new_page()
    page.goto(f"{base}/v/{code}", wait_until="networkidle")
    body = page.locator("body").inner_text()
    photos = page.evaluate("""() => [...document.querySelectorAll('img')]
        .filter(i => i.src.includes('/images/')).map(i => i.complete && i.naturalWidth)""")
    assert photos and all(w and w > 0 for w in photos), photos
    if key == "verified":
        assert "监督机构已登记" in body and "监督机构已核验" in body
        assert "未经监督机构核验" not in body and "仅检测机构自行登记" not in body
        assert page.locator('[data-type="registry"]').count() >= 1
        assert "监督机构登记" in body
        assert "已登记，检测时在有效期内" in body and "监督机构已登记授权签字人" in body
        assert "设备未经监督机构登记" not in body
    else:
        assert "仅检测机构自行登记" in body and "未经监督机构核验" in body
        assert page.locator('[data-code="witness_unverified"]').count() >= 1
        assert "授权签字人未经监督机构登记" in body
    page.screenshot(path=str(ARTIFACTS / f"registry-{key}.png"), full_page=True)
    page.close()
