"""Hostile files, generated: what an attacker would send to the public verify route.

Every builder returns bytes made here (nothing downloaded). PDFs are written by hand
(`pdf_from_objects` lays out the objects and a correct xref table) so that each one is
exactly the attack it is named after and otherwise a well-formed file.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable


def pdf_from_objects(objects: list[bytes], *, root: int = 1, xref: bool = True) -> bytes:
    """A PDF whose object `i + 1` is `objects[i]`, with a correct xref (unless not `xref`)."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    start = len(out)
    if xref:
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        for offset in offsets:
            out += b"%010d 00000 n \n" % offset
    else:  # a table that points nowhere
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        for _ in offsets:
            out += b"%010d 00000 n \n" % 999_999_999
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, start,
    )
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def huge_mediabox() -> bytes:
    """One page of 14400 x 14400 user units scaled by UserUnit 75000: ~100,000 km a side."""
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 14400 14400] /UserUnit 75000"
        b" /Contents 4 0 R >>",
        _stream(b"0 0 1 rg 0 0 14400 14400 re f"),
    ])


def huge_mediabox_plain() -> bytes:
    """One page with a MediaBox of 10^7 points a side (what made a 440-byte file a 500)."""
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10000000 10000000] /Contents 4 0 R >>",
        _stream(b"0 0 1 rg 0 0 10000000 10000000 re f"),
    ])


def large_page(side_pt: int = 3000, strokes: int = 2000) -> bytes:
    """One large page full of strokes: a real render at the pixel budget."""
    ops = b"".join(
        b"%d %d m %d %d l S\n" % (i % side_pt, 0, side_pt - i % side_pt, side_pt)
        for i in range(strokes)
    )
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents 4 0 R >>"
        % (side_pt, side_pt),
        _stream(ops),
    ])


def many_pages(count: int = 3000) -> bytes:
    """`count` A4 pages sharing one content stream."""
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
        _stream(b"0 0 0 rg 72 72 400 600 re f"),
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 3 0 R >>"
    ] * count
    return pdf_from_objects(objects)


def flate_bomb(megabytes: int = 600) -> bytes:
    """A page whose content stream inflates to `megabytes` MB of spaces."""
    packer = zlib.compressobj(1)
    chunk = b" " * (1024 * 1024)
    data = b"".join(packer.compress(chunk) for _ in range(megabytes)) + packer.flush()
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        _stream(data, b"/Filter /FlateDecode "),
    ])


def deep_nesting(depth: int = 200_000) -> bytes:
    """A page dictionary holding an array nested `depth` deep."""
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Deep "
        + b"[" * depth + b"]" * depth + b" >>",
    ])


def broken_xref() -> bytes:
    """A small PDF whose xref table points past the end of the file."""
    return pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
    ], xref=False)


def encrypted_pdf() -> bytes:
    """A one-page PDF encrypted with a user password (pypdf, AES-256)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt("secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pixel_bomb_png(side: int = 30_000) -> bytes:
    """A valid grey PNG of side x side pixels (900 MP at 30,000), a few hundred kB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(1)
    rows = (b"\x00" + b"\xff" * side) * 100
    body = b"".join(packer.compress(rows) for _ in range(side // 100)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def truncated_jpeg() -> bytes:
    """The first 40 % of a real JPEG."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (800, 600), (120, 160, 200)).save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return data[: len(data) * 2 // 5]


def tiff_bad_exif() -> bytes:
    """A small TIFF whose tag directory (the structure EXIF shares) is wrong: an
    Orientation tag, and StripOffsets typed FLOAT, on which Pillow's decoder raises
    TypeError (not OSError) when the pixels are read."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (64, 64), 200).save(out, format="TIFF")
    data = bytearray(out.getvalue())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    entries = [bytearray(data[ifd + 2 + 12 * i: ifd + 14 + 12 * i]) for i in range(count)]
    for entry in entries:
        if struct.unpack_from("<H", entry)[0] == 0x0111:  # StripOffsets: LONG -> FLOAT
            struct.pack_into("<H", entry, 2, 11)
    entries.append(bytearray(struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)))  # Orientation 6
    entries.sort(key=lambda e: struct.unpack_from("<H", e)[0])
    new_ifd = len(data)
    data += struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    struct.pack_into("<I", data, 4, new_ifd)
    return bytes(data)


def eps() -> bytes:
    """An Encapsulated PostScript file (Pillow would hand it to Ghostscript)."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n"
            b"newpath 0 0 moveto 100 100 lineto stroke\nshowpage\n%%EOF\n")


#: name -> (builder, media type) of the whole corpus.
CORPUS: dict[str, tuple[Callable[[], bytes], str]] = {
    "huge-mediabox.pdf": (huge_mediabox_plain, "application/pdf"),
    "huge-userunit.pdf": (huge_mediabox, "application/pdf"),
    "large-page.pdf": (large_page, "application/pdf"),
    "many-pages.pdf": (many_pages, "application/pdf"),
    "flate-bomb.pdf": (flate_bomb, "application/pdf"),
    "deep-nesting.pdf": (deep_nesting, "application/pdf"),
    "broken-xref.pdf": (broken_xref, "application/pdf"),
    "encrypted.pdf": (encrypted_pdf, "application/pdf"),
    "pixel-bomb.png": (pixel_bomb_png, "image/png"),
    "truncated.jpg": (truncated_jpeg, "image/jpeg"),
    "bad-exif.tiff": (tiff_bad_exif, "image/tiff"),
    "drawing.eps": (eps, "application/postscript"),
}
