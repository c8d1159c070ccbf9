"""Stamp building blocks: the QR matrix (our fast mask choice) and the code grouping."""

from __future__ import annotations

import random
import string

import segno
import zxingcpp
from PIL import Image

from signer.stamp import _penalty, group_code, qr_matrix

QR = zxingcpp.barcode_formats_from_str("QRCode")


def _image(matrix: tuple[bytearray, ...], scale: int = 4, quiet: int = 4) -> Image.Image:
    n = len(matrix)
    size = (n + 2 * quiet) * scale
    img = Image.new("L", (size, size), 255)
    px = img.load()
    assert px is not None
    for r, row in enumerate(matrix):
        for c, v in enumerate(row):
            if v & 1:
                for dy in range(scale):
                    for dx in range(scale):
                        px[(c + quiet) * scale + dx, (r + quiet) * scale + dy] = 0
    return img


def test_qr_matrix_is_segnos_symbol_for_one_mask_and_decodes() -> None:
    rng = random.Random(7)
    for _ in range(12):
        code = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(19))
        url = f"https://jz.example.cn/v/{code}"
        for level in ("m", "q"):
            matrix = qr_matrix(url, level)
            same = [
                mask
                for mask in range(8)
                if tuple(
                    segno.make(url, error=level, micro=False, boost_error=False, mask=mask).matrix
                )
                == matrix
            ]
            assert len(same) == 1
            found = [b.text for b in zxingcpp.read_barcodes(_image(matrix), formats=QR)]
            assert found == [url]


def test_mask_choice_has_a_low_penalty() -> None:
    """Our choice scores (by our penalty) no worse than any other mask of the symbol."""
    url = "https://jz.example.cn/v/44030026K7QZ3M9XB2T"
    chosen = qr_matrix(url, "m")
    n = len(chosen)

    def rows(m: tuple[bytearray, ...]) -> list[int]:
        return [int("".join("1" if v & 1 else "0" for v in row), 2) for row in m]

    scores = [
        _penalty(rows(tuple(segno.make(url, error="m", micro=False, boost_error=False,
                                       mask=k).matrix)), n)
        for k in range(8)
    ]
    # format bits differ slightly between the two computations; allow a small slack
    assert _penalty(rows(chosen), n) <= min(scores) + 40


def test_group_code() -> None:
    assert group_code("44030026K7QZ3M9XB2T") == "4403 0026 K7QZ 3M9X B2T"
    assert group_code("ABCD") == "ABCD"
