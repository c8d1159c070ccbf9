"""R9: key images are flagged (never refused) when their EXIF names an editing program,
when the EXIF capture time is far from the declared one, and when they arrive more than
24 h after capture; a plain camera photo gets no flag."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from PIL import Image

from service.domain.imagefacts import _parse_exif_time
from service.state import ServiceState
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import multipart

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _jpeg(software: str, taken: datetime) -> bytes:
    img = Image.new("RGB", (64, 48), (90, 140, 60))
    exif = Image.Exif()
    exif[0x0131] = software
    exif.get_ifd(0x8769)[0x9003] = taken.astimezone(SHANGHAI).strftime("%Y:%m:%d %H:%M:%S")
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_media_flags(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 99)
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    cases = {
        "camera": ("HUAWEI P60 Pro", now - timedelta(hours=1), now - timedelta(hours=1)),
        "edited": ("Adobe Photoshop 25.0 (Windows)", now - timedelta(hours=1),
                   now - timedelta(hours=1)),
        "mismatch": ("HUAWEI P60 Pro", now - timedelta(hours=1), now - timedelta(hours=3)),
        "late": ("HUAWEI P60 Pro", now - timedelta(hours=30), now - timedelta(hours=30)),
    }
    flags_of: dict[str, list[str]] = {}
    with client_for(app, lab) as c:
        for name, (software, taken, declared) in cases.items():
            meta = {"kind": "image", "captured_at": declared.isoformat(), "description": name}
            body, ctype = multipart(meta, _jpeg(software, taken), "image/jpeg")
            resp = c.post("/api/v1/media", content=body, content_type=ctype)
            assert resp.status_code == 201, resp.text  # flagged, never refused
            flags_of[name] = sorted(f["rule"] for f in resp.json()["flags"] or [])
        listed = c.get("/api/v1/flags", query={"rule": "media_edited"}).json()
    assert flags_of == {
        "camera": [],
        "edited": ["media_edited"],
        "mismatch": ["media_time_mismatch"],
        "late": ["media_late"],
    }
    assert len(listed) == 1 and listed[0]["detail"]["software"].startswith("Adobe Photoshop")


def test_exif_time_parsing() -> None:
    assert _parse_exif_time("2026:11:22 09:40:00", None, "Asia/Shanghai") == datetime(
        2026, 11, 22, 9, 40, tzinfo=SHANGHAI
    )
    with_offset = _parse_exif_time("2026:11:22 09:40:00", "+09:00", "Asia/Shanghai")
    assert with_offset is not None and with_offset.utcoffset() == timedelta(hours=9)
    assert _parse_exif_time("not a time", None, "Asia/Shanghai") is None
    assert _parse_exif_time(None, None, "Asia/Shanghai") is None
