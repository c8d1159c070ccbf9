"""Stamp building blocks: the QR matrix (our fast mask choice) and the code grouping."""

from __future__ import annotations

import random
import string

import segno
import zxingcpp
from PIL import Image

from signer.qrmatrix import _layout, _matrix_bits, _message, penalty
from signer.stamp import group_code, qr_matrix

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


def _random_texts(rng: random.Random, count: int) -> list[str]:
    """Lower-case URLs (byte mode) and upper-case signed-QR-like URLs (alphanumeric mode),
    from a version-2 to a version-15+ symbol."""
    upper = string.ascii_uppercase + string.digits
    texts = []
    for i in range(count):
        code = "".join(rng.choice(upper) for _ in range(19))
        if i % 2:
            tail = "".join(rng.choice(upper + "234567") for _ in range(rng.randint(0, 330)))
            texts.append(f"HTTPS://JZ.EXAMPLE.CN/V/{code}/JZ1{tail}")
        else:
            tail = "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(0, 200)))
            texts.append(f"https://jz.example.cn/v/{code}/{tail}")
    return texts


def test_qr_matrix_is_segnos_symbol_and_decodes() -> None:
    """The whole symbol, mask choice included, is the one segno's reference encoder makes
    (it scores all eight masks by ISO/IEC 18004 7.8.3), and zxing-cpp reads it."""
    rng = random.Random(7)
    for i, url in enumerate(_random_texts(rng, 80)):
        for level in ("m", "q"):
            matrix = qr_matrix(url, level)
            ref = segno.make(url, error=level, micro=False, boost_error=False)
            assert matrix == tuple(ref.matrix), (url, level)
            if i % 8 == 0:
                found = [b.text for b in zxingcpp.read_barcodes(_image(matrix), formats=QR)]
                assert found == [url]


def test_penalty_is_segnos_for_every_mask() -> None:
    """Our whole-symbol penalty equals segno's module-by-module one for each of the eight
    candidates (before format and version information, as segno evaluates them)."""
    from segno import consts, encoder

    rng = random.Random(11)
    for url in _random_texts(rng, 24):
        for level in ("m", "q"):
            error = encoder.normalize_errorlevel(level)
            version, message = _message(url, error)
            lay = _layout(version)
            n = lay.n
            # segno's own unmasked matrix, built as its encoder does
            segs = encoder.prepare_data(url, None, None)
            buff = encoder.Buffer()
            for seg in segs:
                encoder.write_segment(buff, seg, None, encoder.version_range(version), False)
            cap = consts.SYMBOL_CAPACITY[version][error]
            encoder.write_terminator(buff, cap, None, len(buff))
            encoder.write_padding_bits(buff, version, len(buff))
            encoder.write_pad_codewords(buff, version, cap, len(buff))
            final = encoder.make_final_message(version, error, buff)
            assert "".join(map(str, final)) == message
            base = encoder.make_matrix(n, n)
            encoder.add_finder_patterns(base, n, n)
            encoder.add_alignment_patterns(base, n, n)
            encoder.add_codewords(base, final, version)
            region = encoder.make_matrix(n, n)
            encoder.add_finder_patterns(region, n, n)
            encoder.add_alignment_patterns(region, n, n)
            region[-8][8] = 0x1
            for k, fn in enumerate(encoder.get_data_mask_functions(False)):
                m = tuple(bytearray(row) for row in base)
                encoder.apply_mask(m, fn, n, n, lambda i, j, region=region: region[i][j] > 0x1)
                assert penalty(_matrix_bits(m, lay.stride), lay) == encoder.evaluate_mask(
                    m, n, n
                ), (url, level, k)


def test_penalty_counts_finder_like_patterns_as_segno_does() -> None:
    """N3 on single lines where the patterns overlap, touch the edge or the light area is
    cut short: against segno's own line scan, on random lines and on crafted ones."""
    from segno import encoder

    rng = random.Random(3)
    crafted = [
        "0000101110111010000" + "0" * 6,  # two overlapping, 4 apart
        "00001011101011101" + "0000" + "0" * 4,  # two overlapping, 6 apart
        "1011101" + "0" * 18,  # at the left edge
        "1" * 4 + "0" * 14 + "1011101",  # at the right edge
        "1001011101101001000010111",  # light area cut short by the edge (3 before)
    ]
    lines = crafted + ["".join(rng.choice("01") for _ in range(25)) for _ in range(3000)]
    for line in lines:
        n = len(line)
        rows = [bytearray(int(ch) for ch in line)] + [bytearray(n) for _ in range(n - 1)]
        lay = _layout(2)  # 25 x 25
        assert lay.n == n
        got = penalty(_matrix_bits(rows, lay.stride), lay)
        assert got == encoder.evaluate_mask(rows, n, n), line


def test_group_code() -> None:
    # region 440300, year 26, random K7QZ3 M9XB2, check T (INTERFACE.md §4)
    assert group_code("44030026K7QZ3M9XB2T") == "440300-26-K7QZ3-M9XB2-T"
    assert group_code("ABCD") == "ABCD"  # not a code: left alone


def test_stamp_page_and_api_print_a_code_alike() -> None:
    """The stamp (signer), the public page (display_code) and the reports API (`printed`)
    show one form of every code; fails if any of them gets its own grouping again."""
    from service.domain.codes import generate_code, parse_code
    from service.domain.public import display_code

    for year in range(2020, 2060):
        for region in ("110105", "440300", "650100"):
            code = generate_code(region, year)
            shown = group_code(code.canonical)
            assert shown == display_code(code.canonical) == code.printed
            assert parse_code(shown).canonical == code.canonical
