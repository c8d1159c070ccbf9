"""R2: the QR page shows the key images (关键影像) behind a report, served downscaled and
without their metadata, only for images in that report's checked chain."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from service.clock import utc_now
from service.state import ServiceState
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import ago, build_chain, post_media, specimen_photo


def _photo_with_metadata() -> bytes:
    """A 2000x1500 JPEG taken 'rotated' (EXIF orientation 6) with a camera make."""
    img = Image.new("RGB", (2000, 1500), (40, 120, 200))
    for x in range(0, 2000, 50):  # some structure so the encoder has work to do
        img.paste((250, 250, 250), (x, 0, x + 10, 1500))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    exif[0x010F] = "JianzhengTestCam"  # Make
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def test_key_images_are_shown_and_served_clean(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 61)
    photo = _photo_with_metadata()
    photo_sha = hashlib.sha256(photo).hexdigest()
    with client_for(app, lab) as c:
        chain = build_chain(c, finished_at=ago(60))
        photo_id = post_media(c, photo)
        r = c.issue_code("BG-IMG-1", chain.project)
        assert r.status_code == 201, r.text
        code = r.json()["code"]
        meta = {
            "conclusion": "pass",
            "issued_on": utc_now().date().isoformat(),
            "approver": "王五",
            "parents": [chain.sample, chain.test_record, photo_id],
        }
        assert c.put(f"/api/v1/reports/{code}", json_body=meta).status_code == 200
        public = c.http

        view = public.get(f"/api/v1/public/reports/{code}").json()
        images = {s["record_id"]: s["image"] for s in view["chain"] if s.get("image")}
        assert images[photo_id] == {
            "sha256": photo_sha,
            "url": f"/api/v1/public/reports/{code}/images/{photo_sha}",
        }
        assert chain.image in images  # the sealed sample photo is a key image as well
        assert all(s["image"] is None for s in view["chain"] if s["type"] != "media")
        page = public.get(f"/v/{code}").text
        assert f'src="/api/v1/public/reports/{code}/images/{photo_sha}"' in page

        resp = public.get(images[photo_id]["url"])
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
        assert resp.headers["x-original-sha256"] == photo_sha
        with Image.open(io.BytesIO(resp.content)) as served:
            assert served.size == (768, 1024)  # upright (orientation applied), downscaled
            assert dict(served.getexif()) == {}  # no camera make, no orientation, no GPS
        assert b"JianzhengTestCam" not in resp.content

        # the sample photo of the test kit is a real photo too (tests/recordkit.py)
        sample_photo = public.get(images[chain.image]["url"])
        assert sample_photo.status_code == 200, sample_photo.text
        with Image.open(io.BytesIO(sample_photo.content)) as served:
            assert served.format == "JPEG" and served.size == (640, 480)

        # only images of this report's chain
        contract_pdf = hashlib.sha256(b"%PDF").hexdigest()
        for sha in (contract_pdf, "nothex", photo_sha.upper()[:10]):
            miss = public.get(f"/api/v1/public/reports/{code}/images/{sha}")
            assert miss.status_code == 404 and miss.json()["code"] == "image_not_found", sha
        unknown = public.get(f"/api/v1/public/reports/44030026K7QZ3M9XB2T/images/{photo_sha}")
        assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_code"

        # a changed stored file: the step fails its check and the image is no longer served
        path = app_state.blobs.path(photo_sha)
        path.write_bytes(photo[:-10] + b"tampered!!")
        view = public.get(f"/api/v1/public/reports/{code}").json()
        step = next(s for s in view["chain"] if s["record_id"] == photo_id)
        assert step["check"] == "failed" and step["image"] is None
        gone = public.get(f"/api/v1/public/reports/{code}/images/{photo_sha}")
        assert gone.status_code == 404 and gone.json()["code"] == "image_not_found"


def test_a_key_image_that_does_not_decode_is_refused_at_upload(app_state: ServiceState) -> None:
    """A media record of kind `image` is shown on the public page: bytes that only claim
    to be an image (or an EPS, a truncated JPEG, a TIFF the decoder trips on, a pixel
    bomb) are refused with 422 `image_unreadable`; the same bytes as a document are fine."""
    from tests import hostile_kit
    from tests.recordkit import multipart

    app = make_app(app_state)
    lab = add_lab(app_state, 62)
    not_images = {
        "fake jpeg": (b"\xff\xd8\xff\xe0 sample photo YP1", "image/jpeg"),
        "truncated jpeg": (hostile_kit.truncated_jpeg(), "image/jpeg"),
        "bad tiff": (hostile_kit.tiff_bad_exif(), "image/tiff"),
        "eps": (hostile_kit.eps(), "image/jpeg"),
        "pixel bomb": (hostile_kit.pixel_bomb_png(12_000), "image/png"),
    }
    with client_for(app, lab) as c:
        for name, (data, media_type) in not_images.items():
            body, ctype = multipart({"kind": "image", "description": name}, data, media_type)
            r = c.post("/api/v1/media", content=body, content_type=ctype)
            assert r.status_code == 422, (name, r.text)
            assert r.json()["code"] == "image_unreadable", (name, r.json())
        data, media_type = not_images["fake jpeg"]
        body, ctype = multipart({"kind": "document", "description": "x"}, data, media_type)
        assert c.post("/api/v1/media", content=body, content_type=ctype).status_code == 201
        post_media(c, specimen_photo("YP-OK"))  # a real photo is taken (201)
