"""Read what an image file says about itself (EXIF) for the R9 checks in `rules`, and
decode image files from outside within bounds (`open_image`).

`image_facts` parses only the header (Pillow opens lazily); anything unreadable yields no
facts, never an error: the facts only add flags.

`open_image` is the one way an image file from outside is decoded (public verify, key
images, media uploads of kind `image`): only the formats a camera, a phone or a scanner
makes (JPEG, PNG, WebP, TIFF, BMP, GIF; never EPS, which Pillow hands to Ghostscript, nor
Pillow's other plug-ins); the pixel count is checked from the header, before anything is
decoded, against `JZ_PUBLIC__MAX_IMAGE_PIXELS`; a JPEG is decoded straight at a reduced
scale when a smaller result is wanted; and any decoder exception (a truncated file, a
TIFF whose tags trip Pillow with a TypeError) is `ImageUnreadable`.
"""

from __future__ import annotations

import io
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from service.domain.rules import ImageFacts

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/tiff", "image/heic"})
#: The only image formats decoded (Pillow format names).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
#: Longest side of a key image as the public page serves it (pixels); an upload of kind
#: `image` is decoded at this size to check it is an image.
KEY_IMAGE_MAX_SIDE = 1024
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


class ImageUnreadable(ValueError):
    """Not an image of an allowed format, beyond the pixel limit, or undecodable."""


def open_image(data: bytes, max_pixels: int, max_side: int | None = None) -> Any:
    """The decoded, upright image in `data` (a PIL image), at most `max_side` a side.

    Raises ImageUnreadable for a format not in IMAGE_FORMATS, more than `max_pixels`
    pixels (checked before decoding) or any failure to decode."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        width, height = img.size
        if width <= 0 or height <= 0 or width * height > max_pixels:
            raise ImageUnreadable(
                f"the image has {width} x {height} pixels, more than {max_pixels}"
            )
        if max_side is not None and img.format == "JPEG":
            img.draft(img.mode, (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
        img.load()
        upright = ImageOps.exif_transpose(img)
        if max_side is not None:
            upright.thumbnail((max_side, max_side))
        return upright
    except ImageUnreadable:
        raise
    except Image.DecompressionBombError:  # Pillow's own cap, beyond ours
        raise ImageUnreadable(f"the image has more than {max_pixels} pixels") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable image
        raise ImageUnreadable(f"not a readable image: {type(exc).__name__}") from None
