"""Key images (关键影像, R2) as the public page serves them: the stored original, checked
against its SHA-256, turned upright, downscaled and re-encoded without EXIF (no GPS, no
camera serial), cached under the data directory by the original's SHA-256."""

from __future__ import annotations

import io
import os
from pathlib import Path

from service.errors import Invalid
from service.storage.blobs import BlobStore

#: Longest side of a key image as the public page serves it (pixels).
KEY_IMAGE_MAX_SIDE = 1024
#: Largest image decoded, in pixels (a 50-megapixel photo), against decompression bombs.
MAX_IMAGE_PIXELS = 50_000_000


def key_image_jpeg(blobs: BlobStore, cache_dir: Path, sha: str) -> bytes:
    """The public rendering of stored image `sha`: verified, downscaled, re-encoded (cached
    in `cache_dir`). Raises Invalid `image_unreadable` when it is not a readable image."""
    from PIL import Image, ImageOps

    from service.domain.signing import read_verified_blob

    cache = cache_dir / f"{sha}.jpg"
    try:
        return cache.read_bytes()
    except FileNotFoundError:
        pass
    original = read_verified_blob(blobs, sha)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(original)) as opened:
            upright = ImageOps.exif_transpose(opened)  # as taken; EXIF is dropped below
            upright.thumbnail((KEY_IMAGE_MAX_SIDE, KEY_IMAGE_MAX_SIDE))
            out = io.BytesIO()
            upright.convert("RGB").save(out, format="JPEG", quality=82, optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise Invalid(
            "image_unreadable", "the stored file is not a readable image"
        ) from None
    jpeg = out.getvalue()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(jpeg)
    os.replace(tmp, cache)
    return jpeg
