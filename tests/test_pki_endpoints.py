"""The platform's own TSA and CA endpoints, used over real HTTP by pyHanko's TSA client."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509

from service.anchoring.devchain import free_port
from service.app import create_app
from service.settings import Settings
from signer.ca import DevCA
from signer.errors import TimestampError
from signer.seal import seal_pdf
from signer.stamp import make_dev_seal_image, prepare_seal
from signer.tsa import TimeStampResponse, _rejection, http_timestamper
from tests.fixtures.db import make_settings
from tests.fixtures.signer import INSTITUTION_NAME, INSTITUTION_USCC, TEST_CODE, make_report_pdf
from verifier.pdf import verify_sealed_pdf


@dataclass(frozen=True)
class Running:
    base_url: str
    settings: Settings


@pytest.fixture
def running(tmp_path: Path, sqlite_url: str) -> Iterator[Running]:
    settings = make_settings(tmp_path, sqlite_url)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Running(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_pyhanko_timestamps_a_seal_through_our_tsa_endpoint(running: Running) -> None:
    """B-T with the TSA reached over HTTP: the signature's timestamp validates and chains
    to the same development root the `/ca/roots.pem` endpoint publishes."""
    ca = DevCA(running.settings.ca_dir)
    sealed = seal_pdf(
        make_report_pdf(2),
        TEST_CODE,
        f"https://jz.example/v/{TEST_CODE}",
        prepare_seal(INSTITUTION_NAME, make_dev_seal_image(INSTITUTION_NAME)),
        ca.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME),
        http_timestamper(f"{running.base_url}/tsa"),
        "B-T",
    )
    roots = httpx.get(f"{running.base_url}/ca/roots.pem").content
    assert roots == ca.roots_pem()
    result = verify_sealed_pdf(sealed.data, [roots], expected_code=TEST_CODE, check_qr=False)
    assert result.timestamp_ok is True, result.findings
    assert result.timestamp is not None
    assert result.bottom_line, result.findings


def test_tsa_refuses_garbage_with_a_signed_rejection_not_an_error(running: Running) -> None:
    r = httpx.post(
        f"{running.base_url}/tsa",
        content=b"\x30\x03\x02\x01\x07",
        headers={"content-type": "application/timestamp-query"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/timestamp-reply"
    # asn1crypto's own TimeStampResp wrongly requires the token; signer.tsa's schema doesn't.
    reply = TimeStampResponse.load(r.content)
    assert reply["status"]["status"].native == "rejection"


def test_tsa_wants_its_media_type_and_small_bodies(running: Running) -> None:
    r = httpx.post(f"{running.base_url}/tsa", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["code"] == "unsupported_media_type"
    r = httpx.post(
        f"{running.base_url}/tsa",
        content=b"\x00" * 20_000,
        headers={"content-type": "application/timestamp-query"},
    )
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"


def test_crl_endpoint_serves_the_roots_crl(running: Running) -> None:
    r = httpx.get(f"{running.base_url}/ca/root.crl")
    assert r.status_code == 200
    crl = x509.load_der_x509_crl(r.content)
    root = DevCA(running.settings.ca_dir).root_certificate
    assert crl.issuer == root.subject
    assert crl.is_signature_valid(root.public_key())


class _RefusingTSA(http.server.BaseHTTPRequestHandler):
    """An RFC 3161 TSA that refuses every request, as a real one does when out of service:
    a `TimeStampResp` with a status and no token."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        body = _rejection("system_failure", "TSA in maintenance, try later").dump()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_tsa_refusal_is_reported_with_its_reason(tmp_path: Path) -> None:
    """pyHanko's parser alone would fail on the token-less reply; ours reports the TSA's
    own words as a `timestamp_unavailable` signer error (503 to the lab)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingTSA)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        ca = DevCA(tmp_path / "ca")
        with pytest.raises(TimestampError) as exc:
            seal_pdf(
                make_report_pdf(1),
                TEST_CODE,
                f"https://jz.example/v/{TEST_CODE}",
                prepare_seal(INSTITUTION_NAME, make_dev_seal_image(INSTITUTION_NAME)),
                ca.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME),
                http_timestamper(f"http://127.0.0.1:{httpd.server_port}/"),
                "B-T",
            )
        assert exc.value.code == "timestamp_unavailable"
        assert "TSA in maintenance, try later" in str(exc.value)
        assert "system_failure" in str(exc.value)
    finally:
        httpd.shutdown()
        thread.join(5)
