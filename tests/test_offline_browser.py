"""The offline verifier (/offline/) in Debian's Chromium at a 375x812 phone viewport: after
one visit the service is stopped and the browser context goes offline; the page still
loads from its service worker, decodes a photo of a printed page in the browser
(zxing-wasm), verifies the ES256 signature with WebCrypto against the cached trust list and
shows the signed facts; a tampered QR and a key the list does not name show the failure.
Back online, the trust list is used only when the pinned platform root's signature over
it verifies (RFC 8785 in the browser, checked here against the Python canonicaliser): a
list with a key's window changed, or signed by another root, is refused and the cached
list stays in use; a genuine list replaces it, and a key's window is judged at the
payload's own signing time. Screenshots: test-artifacts/offline-*.png."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
import segno
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from service.anchoring.devchain import free_port
from service.state import build_state
from tests.browser_kit import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
from tests.fixtures.db import make_settings
from tests.fixtures.server import served
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import issue_report, sealed_bytes
from tests.qr_kit import cose_of, degraded_photo, qr_texts, render_page
from verifier.canonical import canonicalize, loads_strict
from verifier.errors import CanonicalizationError
from verifier.qr import (
    encode_sign1,
    parse_trust_list,
    payload_text,
    protected_header,
    root_fingerprint,
    sig_structure,
    trust_list_signed_bytes,
)

pytestmark = [pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CACHE = "jz-offline-v2"


class TrustListSwap:
    """The app, except that `GET /ca/trust-list.json` answers `body` when it is set (what a
    tampering proxy or a compromised server would send)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.body: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (self.body is not None and scope["type"] == "http"
                and scope["path"] == "/ca/trust-list.json"):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"cache-control", b"no-cache")]})
            await send({"type": "http.response.body", "body": self.body})
            return
        await self.app(scope, receive, send)


def _raw(der_signature: bytes) -> bytes:
    r, s = decode_dss_signature(der_signature)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def signed_list(doc: dict[str, Any], sign: Callable[[bytes], bytes], root_der: bytes) -> bytes:
    """`doc` signed as signer.qrkeys signs it (`sign` returns a DER ECDSA signature)."""
    doc = {k: v for k, v in doc.items() if k not in ("signature", "signature_sm2")}
    doc["signature"] = {"alg": "ES256", "root_id": root_fingerprint(root_der),
                        "value": base64.b64encode(_raw(sign(trust_list_signed_bytes(doc))))
                        .decode("ascii")}
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def other_root() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A root CA with the platform root's name that the app has never seen."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Jianzheng Development Root CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Jianzheng"),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.DER)


def unknown_key_qr(url: str) -> str:
    """The QR text of `url` re-signed by a P-256 key no trust list names."""
    facts = cbor2.loads(cbor2.loads(cose_of(url)).value[2])
    payload = cbor2.dumps(facts, canonical=True)
    key = ec.generate_private_key(ec.SECP256R1())
    kid = bytes.fromhex("0123456789abcdef")
    protected = protected_header(-7, kid)
    sig = _raw(key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA256())))
    return url.rsplit("/", 1)[0] + "/" + payload_text(encode_sign1(protected, payload, sig))


def _qr_png(text: str, path: Path) -> Path:
    segno.make(text, error="q", boost_error=False).save(str(path), scale=5, border=4)
    return path


def _context(browser: Any) -> Any:
    return browser.new_context(viewport=VIEWPORT, device_scale_factor=2, is_mobile=True,
                               has_touch=True, locale="zh-CN")


def _cached_list(page: Any) -> str | None:
    text: str | None = page.evaluate(
        f"caches.open('{CACHE}').then(c => c.match('/ca/trust-list.json'))"
        ".then(r => r ? r.text() : null)")
    return text


def _check(page: Any, photo: Path, result: str) -> str:
    page.evaluate("document.getElementById('verdict').dataset.result = ''")
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector(f"#verdict[data-result='{result}']", timeout=60_000)
    text: str = page.inner_text("#result")
    return text


def test_offline_app_verifies_a_photo_with_the_network_off(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'jz.db'}",
        public={"rate_limit_per_minute": 0, "base_url": "https://jz.example.cn"},
    )
    state = build_state(settings, chain=None)
    app = make_app(state)
    swap = TrustListSwap(app)
    lab = add_lab(state, 1)
    built = issue_report(state, client_for(app, lab), lab.institution, "B1")
    sealed = sealed_bytes(state, built)
    photo = tmp_path / "photo.jpg"
    degraded_photo(sealed, 0).convert("RGB").save(photo, format="JPEG", quality=70)
    # a QR whose payload says "fail" instead of "pass", with the original signature
    (url,) = qr_texts(render_page(sealed, 0, 150))
    tagged = cbor2.loads(cose_of(url))
    facts = cbor2.loads(tagged.value[2])
    sealed_at = facts[7]
    facts[4] = 1
    tagged.value[2] = cbor2.dumps(facts, canonical=True)
    forged = url.rsplit("/", 1)[0] + "/" + payload_text(cbor2.dumps(tagged, canonical=True))
    forged_png = _qr_png(forged, tmp_path / "forged.png")
    stranger_png = _qr_png(unknown_key_qr(url), tmp_path / "stranger.png")

    # the lists a tampering server could send
    genuine = state.qr_keys.get().trust_list_bytes()
    doc = json.loads(genuine)
    assert parse_trust_list(genuine).keys[0].not_before <= sealed_at
    tampered = copy.deepcopy(doc)  # one key's window changed, the signature kept
    tampered["keys"][0]["not_after"] = sealed_at - 1
    stranger_key, stranger_root = other_root()
    by_stranger = signed_list(tampered, lambda data: stranger_key.sign(
        data, ec.ECDSA(hashes.SHA256())), stranger_root)
    ca = state.qr_keys.get().ca
    root_der = ca.root_certificate.public_bytes(serialization.Encoding.DER)
    later = copy.deepcopy(doc)  # genuine, but the key's window starts after the sealing
    later["issued_at"] = doc["issued_at"] + 1
    later["keys"][0]["not_before"] = sealed_at + 1
    later_bytes = signed_list(later, ca.root_sign, root_der)
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = _context(browser)
        page = context.new_page()
        try:
            # 1. the first visit, online: the service worker installs and caches everything
            with served(swap, port=port) as base:
                page.goto(f"{base}/offline/", wait_until="load")
                page.wait_for_function(
                    "navigator.serviceWorker.controller !== null || "
                    "navigator.serviceWorker.ready.then(() => true)", timeout=20_000)
                page.wait_for_function(
                    f"caches.open('{CACHE}').then(c => c.keys())"
                    ".then(k => k.length >= 11 ? true : false)", timeout=20_000, polling=200)
                cached = page.evaluate(
                    f"caches.open('{CACHE}').then(c => c.keys())"
                    ".then(k => k.map(r => new URL(r.url).pathname))")
                assert "/ca/trust-list.json" in cached and "/offline/root.json" in cached
                assert "/offline/vendor/zxing_reader.wasm" in cached
                assert _cached_list(page) == genuine.decode("utf-8")
            # 2. the service is gone and the phone is offline
            context.set_offline(True)
            page.reload(wait_until="load")
            assert page.locator("html").get_attribute("lang") == "zh-CN"
            page.wait_for_selector("#trust[data-ready='1']", timeout=20_000)
            assert page.locator("#net").inner_text() == "离线"
            assert "的签名已核验" in page.inner_text("#trust")
            assert page.locator("#trust-warning").is_hidden()
            page.screenshot(path=str(ARTIFACTS / "offline-start.png"))

            # 3. a photo of the printed page: verified, with the facts and the guidance
            text = _check(page, photo, "valid")
            assert "平台签名有效" in text
            assert "BG-2026-B1" in text and lab.institution in text
            assert "合格" in text and "2026-11-22" in text
            assert "以纸质报告上的内容核对" in text
            assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
            page.screenshot(path=str(ARTIFACTS / "offline-valid.png"), full_page=True)

            # 4. a tampered QR: the signature fails
            text = _check(page, forged_png, "invalid")
            assert "签名无效" in text and "签名验证失败" in text
            page.screenshot(path=str(ARTIFACTS / "offline-tampered.png"), full_page=True)

            # 5. a QR signed by a key the cached list does not name, still offline
            text = _check(page, stranger_png, "invalid")
            assert "未知签名密钥 0123456789abcdef" in text
            page.screenshot(path=str(ARTIFACTS / "offline-unknown-key.png"), full_page=True)

            # 6. online again, the server sends a list with one key's window changed: it is
            # refused, the cached list stays in use (and cached) and still verifies the photo
            context.set_offline(False)
            with served(swap, port=port):
                for body, why, shot in (
                    (tampered, "信任列表的平台根签名验证失败", "offline-list-tampered.png"),
                    (by_stranger, "信任列表不是由平台根证书签发的", "offline-list-other-root.png"),
                ):
                    swap.body = body if isinstance(body, bytes) else json.dumps(body).encode()
                    page.reload(wait_until="load")
                    page.wait_for_selector("#trust-warning[data-refused='1']", timeout=20_000)
                    page.wait_for_selector("#trust[data-ready='1']", timeout=20_000)
                    warning = page.inner_text("#trust-warning")
                    assert "已拒绝新获取的信任列表" in warning and why in warning, warning
                    assert "继续使用此前缓存、已核验的信任列表" in warning
                    assert page.locator("#trust").get_attribute("data-issued-at") == str(
                        doc["issued_at"])
                    assert _cached_list(page) == genuine.decode("utf-8")
                    assert "平台签名有效" in _check(page, photo, "valid")
                    assert page.evaluate("document.documentElement.scrollWidth") <= 375
                    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)

                # 7. a genuine list (signed by the platform root) replaces the cached one; its
                # key's window now starts after the payload's sealing time: refused
                swap.body = later_bytes
                page.reload(wait_until="load")
                page.wait_for_selector(
                    f"#trust[data-ready='1'][data-issued-at='{later['issued_at']}']",
                    timeout=20_000)
                assert page.locator("#trust-warning").is_hidden()
                assert _cached_list(page) == later_bytes.decode("utf-8")
            context.set_offline(True)
            page.reload(wait_until="load")
            page.wait_for_selector(
                f"#trust[data-ready='1'][data-issued-at='{later['issued_at']}']", timeout=20_000)
            text = _check(page, photo, "invalid")
            assert "签章时间" in text and "不在该密钥的有效期内" in text
            page.screenshot(path=str(ARTIFACTS / "offline-window.png"), full_page=True)
        finally:
            context.close()
            browser.close()
    state.engine.dispose()


#: JSON texts whose RFC 8785 form is easy to get wrong: member order by UTF-16 code units
#: (U+1F600 is D83D DE00, before U+E000 and U+FB33, after U+20AC), escapes, numbers
#: (ECMAScript shortest round-trip, exponent limits, -0), nesting, the RFC's own example.
JCS_CASES = [
    '{"\\u20ac": 1, "\\r": 2, "\\ufb33": 3, "\\ud83d\\ude00": 4, "\\u00e9": 5, "a": 6, '
    '"A": 7, "": 8, "\\u0080": 9, "\\ud7ff": 10, "\\ue000": 11, "aa": 12, "ab": 13, '
    '"\\ud800\\udc00": 14, "检测": 15, "见证": 16, "平台": 17}',
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
    '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", '
    '"literals": [null, true, false]}',
    '[0, -0, -0.0, 1, -1, 0.1, 1e21, 1e20, 999999999999999900000, 1e-6, 1e-7, 1.5e-7, '
    '123456789012345.6, 9007199254740991, -9007199254740991, 5e-324, '
    '1.7976931348623157e308, 2.5e-8, 100, 1.0, 1.5e300, 0.30000000000000004, 4.35, '
    '-1.2345e-300, 1e+2, 12345678901234567e-3]',
    '["\\u0000\\u0001\\u001f\\u007f\\u0080\\u2028\\u2029\\ud83d\\ude00</script>'
    '\\"\\\\/\\b\\f\\n\\r\\t", "\\u00ff\\uffff", "中文 ✓", ""]',
    '{"b": [{"z": null, "y": {}, "x": []}, [[]]], "a": {"c": "d", "B": 1}, "_": -0.5}',
]


def test_offline_app_canonical_json_matches_python(tmp_path: Path) -> None:
    """The app's RFC 8785 (trust.js) gives the Python canonicaliser's bytes, in Chromium;
    it checks the served trust list's signature the way verifier.qr does; and a first visit
    that gets a tampered list caches and uses none (it verifies nothing)."""
    from playwright.sync_api import sync_playwright

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'jz.db'}",
                             public={"rate_limit_per_minute": 0})
    state = build_state(settings, chain=None)
    swap = TrustListSwap(make_app(state))
    genuine = state.qr_keys.get().trust_list_bytes()
    kid = bytes.fromhex(json.loads(genuine)["keys"][0]["kid"])
    facts = {1: "44030026K7QZ3M9XB2T", 2: "BG-1", 3: "91440300MA0000001L", 4: 0,
             5: "2026-11-22", 6: bytes(32), 7: json.loads(genuine)["issued_at"]}
    payload = cbor2.dumps(facts, canonical=True)
    payload_only = payload_text(encode_sign1(protected_header(-7, kid), payload, bytes(64)))
    expected = [canonicalize(loads_strict(t.encode("utf-8"))).hex() for t in JCS_CASES]
    # the cases really are tricky: code-point order and Python's own number text differ
    first = loads_strict(JCS_CASES[0].encode())
    assert list(json.loads(canonicalize(first))) != sorted(first)
    assert b"1e+30" in canonicalize(loads_strict(JCS_CASES[1].encode()))
    with pytest.raises(CanonicalizationError):
        canonicalize(["\ud800"])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = _context(browser)
        page = context.new_page()
        try:
            with served(swap) as base:
                page.goto(f"{base}/offline/", wait_until="load")
                page.wait_for_selector("#trust[data-ready='1']", timeout=20_000)
                got = page.evaluate(
                    "(texts) => texts.map(t => JZTrust.hex(JZTrust.canonicalize(JSON.parse(t))))",
                    JCS_CASES)
                for text, want, have in zip(JCS_CASES, expected, got, strict=True):
                    assert have == want, (text, bytes.fromhex(have).decode(),
                                          bytes.fromhex(want).decode())
                refused = page.evaluate(
                    "() => { try { JZTrust.canonicalize(JSON.parse('[\"\\\\ud800\"]')); "
                    "return false; } catch (e) { return true; } }")
                assert refused is True
                doc = json.loads(genuine)
                signed = page.evaluate(
                    "(d) => { const c = {}; for (const k of Object.keys(d)) if (k !== "
                    "'signature' && k !== 'signature_sm2') c[k] = d[k]; "
                    "return JZTrust.hex(JZTrust.canonicalize(c)); }", doc)
                assert signed == trust_list_signed_bytes(doc).hex()
                roots = page.evaluate("fetch('root.json').then(r => r.json())")
                altered = genuine.decode().replace('"issued_at": ', '"issued_at": 1')
                verdicts = page.evaluate(
                    "async ([texts, roots]) => { const out = []; for (const t of texts) "
                    "out.push((await JZTrust.checkTrustList(t, roots)).ok); return out; }",
                    [[genuine.decode(), altered], roots])
                assert verdicts == [True, False]

                # a first visit that gets a tampered list: nothing is cached or used
                tampered = json.loads(genuine)
                tampered["keys"][0]["not_before"] -= 86400
                swap.body = json.dumps(tampered).encode()
                fresh = _context(browser)
                try:
                    first = fresh.new_page()
                    first.goto(f"{base}/offline/", wait_until="load")
                    first.wait_for_selector("#trust-warning[data-refused='1']", timeout=20_000)
                    assert "信任列表的平台根签名验证失败" in first.inner_text("#trust-warning")
                    assert "信任列表不可用" in first.inner_text("#trust")
                    first.wait_for_function(
                        f"caches.open('{CACHE}').then(c => c.match('root.json'))"
                        ".then(r => r !== undefined)", timeout=20_000, polling=200)
                    first.wait_for_function("navigator.serviceWorker.ready.then(() => true)",
                                            timeout=20_000)
                    assert _cached_list(first) is None
                    outcome = first.evaluate("(t) => jzVerifyText(t)", payload_only)
                    assert outcome["result"] == "invalid" and "没有信任列表" in outcome["why"]
                    first.screenshot(path=str(ARTIFACTS / "offline-first-visit-refused.png"),
                                     full_page=True)
                finally:
                    fresh.close()
        finally:
            context.close()
            browser.close()
    state.engine.dispose()
