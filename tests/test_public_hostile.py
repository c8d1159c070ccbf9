"""Hostile files sent to `POST /api/v1/public/verify` cost one bounded child, never the
API process: only the pages needed are rendered, the work runs in a sandbox child whose
memory and time are capped, a child that fails makes the file unreadable, and a full
sandbox answers 503 `verify_busy` with Retry-After."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service.domain.public.images import QR_MAX_SIDE, ImageUnreadable, key_image_jpeg, open_image
from service.domain.public.untrusted import pdf_facts
from service.state import ServiceState, build_state
from tests import hostile_kit, sandbox_work
from tests.fixtures.db import make_settings
from tests.labkit import make_app


def _state(tmp_path: Path, **public: object) -> ServiceState:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'jz.db'}",
        public={"rate_limit_per_minute": 0, **public},
    )
    return build_state(settings, chain=None)


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[ServiceState, TestClient]]:
    state = _state(tmp_path, verify_memory_mb=320, verify_timeout_s=20.0)
    try:
        yield state, TestClient(make_app(state))
    finally:
        state.close()


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_many_page_pdf_is_rendered_on_its_first_page_only() -> None:
    facts = pdf_facts(hostile_kit.many_pages(3000), [], b"", True)
    assert facts.unreadable is None
    assert facts.qr_codes == (None,)  # one page rendered, not 3000 (nor the first 500)


def test_render_errors_make_the_file_unreadable() -> None:
    for build in (hostile_kit.broken_xref, hostile_kit.deep_nesting, hostile_kit.encrypted_pdf):
        facts = pdf_facts(build(), [], b"", True)
        assert facts.unreadable, build.__name__


def test_a_flate_bomb_costs_a_capped_child_not_the_server(
    capped: tuple[ServiceState, TestClient],
) -> None:
    state, http = capped
    bomb = hostile_kit.flate_bomb(500)  # inflates to 500 MB, beyond the child's 320 MiB
    before = _peak_rss_mb()
    r = http.post("/api/v1/public/verify", files={"file": ("bomb.pdf", bomb, "application/pdf")})
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "unreadable", r.json()
    assert _peak_rss_mb() - before < 200  # the 500 MB were never inflated in this process
    assert state.untrusted.get().sandbox.failures >= 1
    # the process goes on answering, and a readable PDF still gets its verdict
    r = http.post("/api/v1/public/verify",
                  files={"file": ("p.pdf", hostile_kit.many_pages(2), "application/pdf")})
    assert r.status_code == 200 and r.json()["verdict"] == "not_ours", r.text


def test_a_full_sandbox_answers_503_with_retry_after(tmp_path: Path) -> None:
    state = _state(tmp_path, verify_concurrency=1, verify_timeout_s=10.0)
    try:
        http = TestClient(make_app(state))
        sandbox = state.untrusted.get().sandbox
        holder = threading.Thread(target=sandbox.run, args=(sandbox_work.sleep_for, 3.0))
        holder.start()
        time.sleep(1.0)  # the one slot is taken (no assertion on time: only a wait)
        try:
            r = http.post("/api/v1/public/verify",
                          files={"file": ("p.pdf", hostile_kit.broken_xref(), "application/pdf")})
        finally:
            holder.join(30)
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "verify_busy"
        assert int(r.headers["Retry-After"]) >= 1
    finally:
        state.close()


# --- images (finding 2) --------------------------------------------------------------------


def _qr_png(side: int, url: str = "https://evil.example.com/v/4403002612345ABCDE1") -> bytes:
    import segno
    from PIL import Image

    qr = io.BytesIO()
    segno.make_qr(url).save(qr, kind="png", scale=10)
    page = Image.new("L", (side, side), 255)
    page.paste(Image.open(io.BytesIO(qr.getvalue())).convert("L"), (20, 20))
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()


def test_an_image_above_the_pixel_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    photo = _qr_png(1100)  # 1.21 megapixels with a QR code on it
    for cap, verdict in ((40_000_000, "not_ours"), (1_000_000, "unreadable")):
        state = _state(tmp_path / str(cap), max_image_pixels=cap)
        try:
            r = TestClient(make_app(state)).post(
                "/api/v1/public/verify", files={"file": ("p.png", photo, "image/png")})
            assert r.status_code == 200, r.text
            assert r.json()["verdict"] == verdict, (cap, r.json())
        finally:
            state.close()
    # a 900-megapixel PNG of a few MB: refused from its header, nothing decoded
    before = _peak_rss_mb()
    with pytest.raises(ImageUnreadable, match="more than"):
        open_image(hostile_kit.pixel_bomb_png(), 40_000_000)
    assert _peak_rss_mb() - before < 100


def test_every_decoder_failure_and_other_formats_are_unreadable(
    capped: tuple[ServiceState, TestClient],
) -> None:
    _, http = capped
    for name in ("bad-exif.tiff", "truncated.jpg", "drawing.eps", "pixel-bomb.png"):
        build, media_type = hostile_kit.CORPUS[name]
        data = build()
        with pytest.raises(ImageUnreadable):
            open_image(data, 40_000_000)
        r = http.post("/api/v1/public/verify", files={"file": (name, data, media_type)})
        assert r.status_code == 200, (name, r.text)
        assert r.json()["verdict"] == "unreadable", (name, r.json())


def test_images_are_downscaled_before_decoding_for_qr() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 200, 200)).save(out, format="JPEG")
    image = open_image(out.getvalue(), 40_000_000, QR_MAX_SIDE)
    assert max(image.size) <= QR_MAX_SIDE
    with pytest.raises(ImageUnreadable):  # a TIFF the decoder trips on (TypeError)
        open_image(hostile_kit.tiff_bad_exif(), 40_000_000)


def test_the_key_image_route_answers_422_for_a_stored_file_that_trips_the_decoder(
    tmp_path: Path,
) -> None:
    from service.errors import Invalid
    from service.storage.blobs import BlobStore

    blobs = BlobStore(tmp_path / "blobs")
    sha = blobs.put(hostile_kit.tiff_bad_exif())
    with pytest.raises(Invalid) as refused:
        key_image_jpeg(blobs, tmp_path / "cache", sha)
    assert refused.value.code == "image_unreadable"


def test_whatever_a_parser_trips_on_makes_the_file_unreadable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: an exception of a kind the PDF checks do not expect (a parser bug,
    an assertion) is not re-raised into the API process as a 500."""
    import verifier.pdf

    def trips(*_args: object, **_kw: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'get_object'")

    monkeypatch.setattr(verifier.pdf, "verify_sealed_pdf", trips)
    facts = pdf_facts(hostile_kit.many_pages(1), [], b"", True)
    assert facts.unreadable == "the PDF could not be read"
