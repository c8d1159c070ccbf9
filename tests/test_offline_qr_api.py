"""The signed QR of a sealed report through the real HTTP API: what the stamp prints
decodes from a 150-dpi render and a degraded photo, verifies with pycose against the
served trust list, and opens a page that shows the QR's signature check."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import segno
import zxingcpp

from service.state import ServiceState, build_state
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import issue_report, sealed_bytes
from tests.qr_kit import (
    QR,
    cose_of,
    degraded_photo,
    pycose_verify,
    qr_texts,
    render_page,
    trust_key_cert,
)
from verifier.pdf import verify_sealed_pdf
from verifier.qr import (
    check_trust_list,
    decode_payload,
    parse_trust_list,
    payload_text,
    root_fingerprint,
    verify_qr_text,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BASE = "https://jz.example.cn"


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[dict[str, Any]]:
    settings = make_settings(
        tmp_path, sqlite_url,
        public={"rate_limit_per_minute": 0, "base_url": BASE},
    )
    state = build_state(settings, chain=None)
    app = make_app(state)
    lab = add_lab(state, 1)
    yield {"state": state, "app": app, "lab": lab, "client": client_for(app, lab)}
    state.engine.dispose()


def _raw_client(world: dict[str, Any]) -> Any:
    from starlette.testclient import TestClient

    return TestClient(world["app"])


def test_sealed_qr_is_signed_decodes_and_verifies_independently(world: dict[str, Any]) -> None:
    state: ServiceState = world["state"]
    built = issue_report(state, world["client"], world["lab"].institution, "Q1")
    sealed = sealed_bytes(state, built)

    # 1. the 150-dpi render of every page and the degraded photo decode to the same URL
    texts = [qr_texts(render_page(sealed, i, 150)) for i in range(2)]
    (url,) = texts[0]
    assert texts[1] == [url]
    assert url.startswith(f"HTTPS://JZ.EXAMPLE.CN/V/{built.code}/JZ1")
    assert qr_texts(degraded_photo(sealed)) == [url]

    # 2. version <= 15, error correction >= Q, and the module size at the printed width
    (found,) = zxingcpp.read_barcodes(render_page(sealed, 0, 150), formats=QR)
    assert found.ec_level in ("Q", "H")
    qr = segno.make_qr(url, error="q", boost_error=False)
    assert qr.version <= 15 and qr.mode == "alphanumeric"
    modules = qr.symbol_size(border=2)[0]  # the stamp prints two quiet modules a side
    module_mm = 32.0 / modules
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "qr-measure.json").write_text(json.dumps({
        "url_chars": len(url), "version": qr.version, "error": qr.error, "mode": qr.mode,
        "printed_mm": 32.0, "module_mm": round(module_mm, 3),
        "px_per_module_150dpi": round(module_mm / 25.4 * 150, 2),
    }, indent=1))
    assert module_mm >= 0.38

    # 3. pycose (not our code) verifies the payload with the served trust list's key
    client = _raw_client(world)
    r = client.get("/ca/trust-list.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    trust = r.json()
    kid = decode_payload(url).kid_hex
    payload = pycose_verify(cose_of(url), trust_key_cert(trust, kid))
    assert payload[1] == built.code and payload[2] == "BG-2026-Q1"
    assert payload[3] == world["lab"].institution and payload[4] == 0
    assert payload[5] == "2026-11-22"
    assert payload[6] == bytes.fromhex(built.sealed["original_sha256"])
    result = verify_qr_text(url, parse_trust_list(r.content))
    assert result.bottom_line

    # 4. the sealed record names the payload's key and sealing time; the PDF verifier reads
    # the code from the new URL form
    from service.storage.models import Record

    with state.sessions() as s:
        rec = s.get(Record, built.sealed["record_id"])
        assert rec is not None
        body = json.loads(rec.canonical)["body"]
    assert body["qr"] == {"kid": kid, "sealed_at": payload[7]}
    check = verify_sealed_pdf(sealed, [state.signer.get().ca.roots_pem()],
                              expected_code=built.code)
    assert check.bottom_line, check.findings

    # 5. the URL opens the page (the path as a phone sends it), with the QR check
    page = client.get(urlsplit(url).path)
    assert page.status_code == 200
    html = page.text
    assert 'id="qr-check" data-signature="ok" data-facts="match"' in html
    assert "平台签名有效" in html and "签名内容与平台记录一致" in html
    assert 'data-status="pending_anchor"' in html  # the ordinary page around it
    lower = client.get(urlsplit(url).path.replace("/V/", "/v/"))
    assert 'data-signature="ok"' in lower.text
    j = client.get(f"/api/v1/public/reports/{built.code}/qr/{url.rsplit('/', 1)[1]}").json()
    assert j["signature_ok"] and j["facts_match"]


def test_a_forged_payload_is_shown_as_such(world: dict[str, Any]) -> None:
    import cbor2

    state: ServiceState = world["state"]
    built = issue_report(state, world["client"], world["lab"].institution, "Q2")
    (url,) = qr_texts(render_page(sealed_bytes(state, built), 0, 150))
    tagged = cbor2.loads(cose_of(url))
    facts = cbor2.loads(tagged.value[2])
    facts[5] = "2026-12-01"
    tagged.value[2] = cbor2.dumps(facts, canonical=True)
    forged = payload_text(cbor2.dumps(tagged, canonical=True))
    client = _raw_client(world)
    html = client.get(f"/V/{built.code}/{forged}").text
    assert 'data-signature="bad" data-facts="differ"' in html
    assert re.search(r'data-fact="issued_on" data-match="False">2026-12-01', html)
    assert 'data-signature="bad"' in client.get(f"/v/{built.code}/JZ1AAAA").text
    # a QR of another report's code with this payload: the URL check fails
    other = issue_report(state, world["client"], world["lab"].institution, "Q3", seal=False)
    html = client.get(f"/v/{other.code}/{url.rsplit('/', 1)[1]}").text
    assert 'data-signature="bad"' in html


def test_reports_sealed_with_a_plain_qr_keep_verifying(world: dict[str, Any]) -> None:
    """A signer without QR keys (as before version 1.1) stamps /v/{CODE}; such reports
    keep their page, their PDF check and the public verify."""
    state: ServiceState = world["state"]
    signer = state.signer.get()
    keys, signer.qr_keys = signer.qr_keys, None
    try:
        built = issue_report(state, world["client"], world["lab"].institution, "Q4")
    finally:
        signer.qr_keys = keys
    sealed = sealed_bytes(state, built)
    assert qr_texts(render_page(sealed, 0, 150)) == [f"{BASE}/v/{built.code}"]
    check = verify_sealed_pdf(sealed, [signer.ca.roots_pem()], expected_code=built.code)
    assert check.bottom_line
    client = _raw_client(world)
    assert client.get(f"/v/{built.code}").status_code == 200
    r = client.post("/api/v1/public/verify", files={"file": ("r.pdf", sealed, "application/pdf")})
    assert r.json()["verdict"] == "genuine"
    from service.storage.models import Record

    with state.sessions() as s:
        rec = s.get(Record, built.sealed["record_id"])
        assert rec is not None and json.loads(rec.canonical)["body"]["qr"] is None


def test_offline_app_files_are_served_with_a_csp(world: dict[str, Any]) -> None:
    client = _raw_client(world)
    r = client.get("/offline/")
    assert r.status_code == 200 and "以纸质报告上的内容核对" in r.text
    csp = r.headers["content-security-policy"]
    assert "'wasm-unsafe-eval'" in csp and "default-src 'self'" in csp
    for name, media in (("sw.js", "text/javascript"), ("vendor/zxing_reader.wasm",
                        "application/wasm"), ("manifest.webmanifest", "application/manifest")):
        f = client.get(f"/offline/{name}")
        assert f.status_code == 200 and f.headers["content-type"].startswith(media)
    assert client.get("/offline/../app.py").status_code == 404
    assert client.get("/offline/nope.js").status_code == 404
    assert client.get("/offline/trust.js").headers["content-type"].startswith("text/javascript")
    # the pinned root the app checks the trust list with: the one that signed it
    roots = client.get("/offline/root.json").json()["roots"]
    trust = parse_trust_list(client.get("/ca/trust-list.json").content)
    (root,) = roots
    der = base64.b64decode(root["certificate"])
    assert root["root_id"] == root_fingerprint(der) == trust.signature_root
    assert check_trust_list(trust, [der]).ok


def test_vendored_browser_files_match_npm() -> None:
    """service/pages/offline/vendor/ holds exactly the npm package's files (web/)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    if not (root / "web" / "node_modules").exists():
        pytest.skip("web/node_modules not installed (scripts/bootstrap.sh test installs it)")
    out = subprocess.run([sys.executable, "scripts/vendor_web.py", "--check"], cwd=root,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((root / "web" / "package-lock.json").read_text())["packages"][
        "node_modules/zxing-wasm"]["version"] == "3.1.6"
