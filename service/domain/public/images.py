"""Images from outside, decoded within bounds (`open_image`), and key images (关键影像, R2)
as the public page serves them: the stored original, checked against its SHA-256, turned
upright, downscaled and re-encoded without EXIF (no GPS, no camera serial), cached under
the data directory by the original's SHA-256.

`open_image` is the one way an image file is decoded: only the formats a camera, a phone
or a scanner makes (JPEG, PNG, WebP, TIFF, BMP, GIF; never EPS, which Pillow hands to
Ghostscript, nor Pillow's other plug-ins); the pixel count is checked from the header,
before anything is decoded, against `JZ_PUBLIC__MAX_IMAGE_PIXELS`; a JPEG is decoded
straight at a reduced scale when a smaller result is wanted; and any decoder exception
(a truncated file, a TIFF whose EXIF trips Pillow with a TypeError) is `ImageUnreadable`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from service.errors import Invalid
from service.storage.blobs import BlobStore

#: Longest side of a key image as the public page serves it (pixels).
KEY_IMAGE_MAX_SIDE = 1024
#: Largest image decoded by default, in pixels (a 40-megapixel photo); the setting is
#: `JZ_PUBLIC__MAX_IMAGE_PIXELS`.
MAX_IMAGE_PIXELS = 40_000_000
#: The only image formats decoded (Pillow format names).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
#: Longest side an image is reduced to before its QR codes are looked for: a phone photo
#: of a page shows the 32 mm QR code at several hundred pixels even at this size.
QR_MAX_SIDE = 2400


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


def key_image_jpeg(
    blobs: BlobStore, cache_dir: Path, sha: str, max_pixels: int = MAX_IMAGE_PIXELS
) -> bytes:
    """The public rendering of stored image `sha`: verified, downscaled, re-encoded (cached
    in `cache_dir`). Raises Invalid `image_unreadable` when it is not a readable image."""
    from service.domain.signing import read_verified_blob

    cache = cache_dir / f"{sha}.jpg"
    try:
        return cache.read_bytes()
    except FileNotFoundError:
        pass
    original = read_verified_blob(blobs, sha)
    try:
        # upright as taken; EXIF is dropped by the re-encoding
        upright = open_image(original, max_pixels, KEY_IMAGE_MAX_SIDE)
        out = io.BytesIO()
        upright.convert("RGB").save(out, format="JPEG", quality=82, optimize=True)
    except (ImageUnreadable, OSError, ValueError):
        raise Invalid(
            "image_unreadable", "the stored file is not a readable image"
        ) from None
    jpeg = out.getvalue()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(jpeg)
    os.replace(tmp, cache)
    return jpeg


def decode_qr_texts(image: Any) -> list[str]:
    """Texts of the QR codes zxing-cpp finds in a decoded image (at most QR_MAX_SIDE a
    side), trying degraded-photo variants in turn."""
    import zxingcpp
    from PIL import Image, ImageOps

    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    gray = image.convert("L")
    gray.thumbnail((QR_MAX_SIDE, QR_MAX_SIDE))
    variants = [gray]
    largest = max(gray.size)
    for side in (2000, 1200, 800):
        if largest > side * 1.2:
            scaled = gray.copy()
            scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
            variants.append(scaled)
    for angle in (5, -5):
        variants.append(
            gray.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
        )
    variants.append(ImageOps.autocontrast(gray))
    for variant in variants:
        found = zxingcpp.read_barcodes(variant, formats=qr_only)
        texts = [b.text for b in found if b.text]
        if texts:
            return texts
    return []
