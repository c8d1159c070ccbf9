"""Read what an image file says about itself (EXIF) for the R9 checks in `rules`.

Only the header is parsed (Pillow opens lazily); anything unreadable yields no facts,
never an error: the record is accepted either way, the facts only add flags.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from service.domain.rules import ImageFacts

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/tiff", "image/heic"})
_EXIF_IFD = 0x8769
_SOFTWARE = 0x0131
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011


def image_facts(path: Path, media_type: str, tz: str) -> ImageFacts | None:
    """EXIF `Software` and `DateTimeOriginal` (with `OffsetTimeOriginal`, else in `tz`)."""
    if media_type not in IMAGE_TYPES:
        return None
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif()
            software = exif.get(_SOFTWARE)
            sub = exif.get_ifd(_EXIF_IFD)
            taken = sub.get(_DATETIME_ORIGINAL)
            offset = sub.get(_OFFSET_TIME_ORIGINAL)
    except Exception:  # noqa: BLE001 - a file Pillow cannot read simply has no facts
        return None
    return ImageFacts(
        software=str(software).strip("\x00 ") or None if software else None,
        taken_at=_parse_exif_time(taken, offset, tz),
    )


def _parse_exif_time(value: object, offset: object, tz: str) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        naive = datetime.strptime(value.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if isinstance(offset, str):
        text = offset.strip("\x00 ")
        try:
            sign = -1 if text.startswith("-") else 1
            hours, minutes = text.lstrip("+-").split(":")
            delta = timedelta(hours=int(hours), minutes=int(minutes)) * sign
            return naive.replace(tzinfo=timezone(delta))
        except ValueError:
            pass
    return naive.replace(tzinfo=ZoneInfo(tz))
