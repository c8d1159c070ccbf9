"""Images from outside, decoded within bounds (`open_image`), and key images (关键影像, R2)
as the public page serves them: the stored original, checked against its SHA-256, turned
upright, downscaled and re-encoded without EXIF (no GPS, no camera serial), cached under
the data directory by the original's SHA-256.

`open_image` (service.domain.imagefacts) is the one way an image file is decoded.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from service.domain.imagefacts import (
    IMAGE_FORMATS,
    KEY_IMAGE_MAX_SIDE,
    ImageUnreadable,
    open_image,
)
from service.errors import Invalid
from service.storage.blobs import BlobStore

#: Largest image decoded by default, in pixels (a 40-megapixel photo); the setting is
#: `JZ_PUBLIC__MAX_IMAGE_PIXELS`.
MAX_IMAGE_PIXELS = 40_000_000
#: Longest side an image is reduced to before its QR codes are looked for: a phone photo
#: of a page shows the 32 mm QR code at several hundred pixels even at this size.
QR_MAX_SIDE = 2400


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


__all__ = [
    "IMAGE_FORMATS", "KEY_IMAGE_MAX_SIDE", "MAX_IMAGE_PIXELS", "QR_MAX_SIDE",
    "ImageUnreadable", "decode_qr_texts", "key_image_jpeg", "open_image",
]
