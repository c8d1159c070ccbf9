"""The visible stamp: QR code of the verification URL, the code in groups, and the seal.

The expensive parts are prepared once per institution (:func:`prepare_seal`): the seal
image and the Chinese label go into a reportlab-made form XObject that uses an embedded
TrueType subset of WenQuanYi Zen Hei Mono (which also carries the glyphs for the code
alphabet). Per report, :func:`build_stamp_form` only builds the QR (:mod:`signer.qrmatrix`)
as one path of rectangles plus one line of text in that font, imports the prepared
objects into the pyHanko writer, and adds one shared form XObject to every page's
resources and contents.
Everything lands in the writer's incremental update; the original bytes are never touched.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageFont
from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from .errors import PdfRejected, SignerError
from .qrmatrix import make_symbol

MM = 72.0 / 25.4
FONT_PATH = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
FONT_SUBFONT_MONO = 1  # "WenQuanYi Zen Hei Mono": fixed-width Latin for the code
CODE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: The printed layout of a report code (INTERFACE.md §4, docs/report-codes.md): region (6),
#: year (2), the random part in two groups of 5, the check character (1).
CODE_GROUPS = (6, 2, 5, 5, 1)
CODE_SEPARATOR = "-"
#: Every character the printed code line can contain (all go into the font subset).
CODE_GLYPHS = CODE_ALPHABET + CODE_SEPARATOR + " "
DEFAULT_LABEL = "扫码验真"
MAX_LABEL_CHARS = 24
MAX_SEAL_IMAGE_BYTES = 4 * 1024 * 1024
MAX_SEAL_IMAGE_PIXELS = 4096 * 4096
SEAL_IMAGE_MAX_SIDE = 480  # px; ~28 mm at 440 dpi, plenty for print
MAX_PAGES = 2000
MAX_PAGE_TREE_DEPTH = 64
MAX_URL_CHARS = 512


def _deref(obj: Any) -> Any:
    return obj.get_object()


Corner = Literal["bottom-right", "bottom-left", "top-right", "top-left"]


@dataclass(frozen=True)
class StampLayout:
    """Where and how large the stamp is; lengths in millimetres.

    The default puts a ~22 mm QR with the seal to its left in the bottom-right corner,
    6 mm from the bottom edge and 8 mm from the right edge: inside the margin strip that
    typical report templates (20-25 mm margins) leave empty.
    """

    corner: Corner = "bottom-right"
    offset_x_mm: float = 8.0
    offset_y_mm: float = 6.0
    qr_mm: float = 22.0
    seal_mm: float = 24.0
    gap_mm: float = 2.0
    quiet_modules: int = 2
    code_pt: float = 6.5
    label_pt: float = 6.0
    error_level: Literal["l", "m", "q", "h"] = "m"

    def __post_init__(self) -> None:
        if self.corner not in ("bottom-right", "bottom-left", "top-right", "top-left"):
            raise ValueError(f"unknown corner {self.corner!r}")
        for name in ("offset_x_mm", "offset_y_mm", "gap_mm"):
            if not 0 <= getattr(self, name) <= 200:
                raise ValueError(f"{name} out of range")
        if not 10 <= self.qr_mm <= 80 or not 0 <= self.seal_mm <= 80:
            raise ValueError("qr_mm must be 10..80 and seal_mm 0..80")
        if not 0 <= self.quiet_modules <= 4:
            raise ValueError("quiet_modules must be 0..4")


DEFAULT_LAYOUT = StampLayout()
#: The layout for a QR carrying the signed payload of INTERFACE §7.5 (a version 13-15 QR):
#: 32 mm at error correction Q, ~0.39 mm per module for a version-15 symbol with its two
#: quiet modules, 2.3 px per module in a 150-dpi scan (zxing-cpp reads down to ~1.8).
SIGNED_QR_LAYOUT = StampLayout(qr_mm=32.0, error_level="q")


@dataclass(frozen=True)
class _Geometry:
    width: float
    height: float
    qr_x: float
    qr_y: float
    qr_size: float
    code_y: float
    label_y: float
    seal_x: float
    seal_y: float
    seal_size: float


def _geometry(layout: StampLayout, has_seal: bool) -> _Geometry:
    q = layout.qr_mm * MM
    s = layout.seal_mm * MM if has_seal else 0.0
    gap = layout.gap_mm * MM if has_seal else 0.0
    code_h = layout.code_pt * 1.25
    label_h = layout.label_pt * 1.3
    text_h = code_h + label_h
    height = max(s, q + text_h)
    width = s + gap + q
    if layout.corner.endswith("left"):
        qr_x, seal_x = 0.0, q + gap
    else:
        qr_x, seal_x = s + gap, 0.0
    return _Geometry(
        width=width,
        height=height,
        qr_x=qr_x,
        qr_y=height - q,
        qr_size=q,
        code_y=height - q - code_h + layout.code_pt * 0.3,
        label_y=layout.label_pt * 0.3,
        seal_x=seal_x,
        seal_y=(height - s) / 2,
        seal_size=s,
    )


@lru_cache(maxsize=1)
def _font() -> Any:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    font = TTFont("JzMono", FONT_PATH, subfontIndex=FONT_SUBFONT_MONO)
    pdfmetrics.registerFont(font)
    return font


@dataclass
class SealAppearance:
    """Per-institution stamp material, prepared once and reused for every report.

    Holds a small PDF (made with reportlab) whose objects are imported into each sealed
    document: the static form (seal image + label) and the embedded font subset.
    """

    institution: str
    layout: StampLayout
    template_pdf: bytes
    geometry: _Geometry
    label: str
    char_widths: dict[str, float]
    fingerprint: str
    _reader: PdfFileReader = field(repr=False)
    _resources: generic.DictionaryObject = field(repr=False)
    static_name: str = "/FormXob.JzStatic"
    font_name: str = "/F1+0"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def text_width(self, text: str, size: float) -> float:
        return sum(self.char_widths[c] for c in text) * size / 1000.0

    def import_into(self, writer: IncrementalPdfFileWriter) -> generic.DictionaryObject:
        """Deep-copy the template's resources (static form + font) into ``writer``."""
        # pyHanko readers are not thread-safe; the template is shared between requests.
        with self._lock:
            imported = writer.import_object(self._resources)
        assert isinstance(imported, generic.DictionaryObject)
        return imported


def prepare_seal(
    institution: str,
    seal_image: bytes | None,
    *,
    layout: StampLayout = DEFAULT_LAYOUT,
    label: str = DEFAULT_LABEL,
) -> SealAppearance:
    """Build the per-institution stamp material (~30 ms; cache the result per institution).

    ``seal_image`` is a PNG/JPEG of the institution's seal (transparency kept) or ``None``
    for a stamp with the QR code only.
    """
    with _PREPARE_LOCK:  # reportlab keeps per-document font state in shared objects
        return _prepare_seal(institution, seal_image, layout=layout, label=label)


_PREPARE_LOCK = threading.Lock()


def _prepare_seal(
    institution: str, seal_image: bytes | None, *, layout: StampLayout, label: str
) -> SealAppearance:
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    if not label or len(label) > MAX_LABEL_CHARS:
        raise SignerError(f"label must be 1..{MAX_LABEL_CHARS} characters")
    font = _font()
    missing = [c for c in set(label + CODE_GLYPHS) if ord(c) not in font.face.charToGlyph]
    if missing:
        raise SignerError(f"the stamp font has no glyph for {''.join(sorted(missing))!r}")
    image = _load_seal_image(seal_image) if seal_image is not None else None
    geo = _geometry(layout, image is not None)

    buf = io.BytesIO()
    c = canvas.Canvas(
        buf,
        pagesize=(geo.width, geo.height),
        pageCompression=1,
        initialFontName="JzMono",
        initialFontSize=layout.code_pt,
        invariant=1,
    )
    c.beginForm("JzStatic", 0, 0, geo.width, geo.height)
    if image is not None:
        c.drawImage(
            ImageReader(image),
            geo.seal_x,
            geo.seal_y,
            geo.seal_size,
            geo.seal_size,
            mask="auto",
        )
    c.setFillColorRGB(0, 0, 0)
    c.setFont("JzMono", layout.label_pt)
    c.drawCentredString(geo.qr_x + geo.qr_size / 2, geo.label_y, label)
    c.endForm()
    # Every glyph the per-report code line can use, so the subset contains them.
    c.doForm("JzStatic")
    c.setFont("JzMono", layout.code_pt)
    c.drawString(0, 0, CODE_GLYPHS)
    encoded = font.splitString(CODE_GLYPHS, c._doc)
    subset_name = "/" + font.getSubsetInternalName(encoded[0][0], c._doc).lstrip("/")
    c.showPage()
    c.save()
    if len(encoded) != 1 or encoded[0][1] != CODE_GLYPHS.encode("ascii"):
        raise SignerError("unexpected font subset encoding for the code alphabet")
    template = buf.getvalue()

    reader = PdfFileReader(io.BytesIO(template))
    page = reader.root["/Pages"]["/Kids"][0].get_object()
    resources = page.raw_get("/Resources")
    static_name = "/FormXob.JzStatic"
    if static_name not in resources["/XObject"] or subset_name not in resources["/Font"]:
        raise SignerError("unexpected stamp template structure")
    # Resolve everything once so later imports only read from the reader's cache.
    _touch(resources, set())

    from reportlab.pdfbase.pdfmetrics import stringWidth

    widths = {ch: stringWidth(ch, "JzMono", 1000) for ch in CODE_GLYPHS}
    return SealAppearance(
        institution=institution,
        layout=layout,
        template_pdf=template,
        geometry=geo,
        label=label,
        char_widths=widths,
        fingerprint=hashlib.sha256(template).hexdigest(),
        _reader=reader,
        _resources=resources,
        static_name=static_name,
        font_name=subset_name,
    )


def _touch(obj: Any, seen: set[int]) -> None:
    if isinstance(obj, generic.IndirectObject):
        if obj.idnum in seen:
            return
        seen.add(obj.idnum)
        obj = _deref(obj)
    if isinstance(obj, generic.StreamObject):
        _ = obj.encoded_data
    if isinstance(obj, generic.DictionaryObject):
        for v in obj.values():
            _touch(v, seen)
    elif isinstance(obj, generic.ArrayObject):
        for v in obj:
            _touch(v, seen)


def _load_seal_image(data: bytes) -> Image.Image:
    if len(data) > MAX_SEAL_IMAGE_BYTES:
        raise SignerError("seal image too large")
    Image.MAX_IMAGE_PIXELS = MAX_SEAL_IMAGE_PIXELS
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        raise SignerError("seal image is not a readable PNG/JPEG") from None
    img = img.convert("RGBA")
    img.thumbnail((SEAL_IMAGE_MAX_SIDE, SEAL_IMAGE_MAX_SIDE), Image.Resampling.LANCZOS)
    return img


def make_dev_seal_image(institution: str, size: int = 400) -> bytes:
    """A red round seal (公章 look) with the institution's name, for development and tests."""
    red = (200, 16, 24, 235)
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    w = size // 28
    d.ellipse((w, w, size - w, size - w), outline=red, width=w)
    cx = cy = size / 2
    r_star = size * 0.14
    pts = []
    for i in range(10):
        r = r_star if i % 2 == 0 else r_star * 0.4
        a = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    d.polygon(pts, fill=red)
    chars = institution[:20] or "?"
    font = ImageFont.truetype(FONT_PATH, int(size * 0.11), index=0)
    span = math.radians(240)
    start = -math.pi / 2 - span / 2
    radius = size / 2 - w * 2 - size * 0.075
    for i, ch in enumerate(chars):
        a = start + span * (i + 0.5) / len(chars)
        glyph = Image.new("RGBA", (int(size * 0.14),) * 2, (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text(
            (glyph.width / 2, glyph.height / 2), ch, font=font, fill=red, anchor="mm"
        )
        glyph = glyph.rotate(-math.degrees(a) - 90, resample=Image.Resampling.BICUBIC)
        x = cx + radius * math.cos(a) - glyph.width / 2
        y = cy + radius * math.sin(a) - glyph.height / 2
        img.alpha_composite(glyph, (int(x), int(y)))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def group_code(code: str) -> str:
    """``44030026K7QZ3M9XB2T`` -> ``440300-26-K7QZ3-M9XB2-T`` (for reading aloud).

    The one printed form of a canonical report code: region, year, random part in two
    groups, check character (:data:`CODE_GROUPS`). The service's pages show codes through
    this function too (``service.domain.public.display_code``), so stamp and page agree.
    Anything that is not a canonical-length code is returned unchanged.
    """
    if len(code) != sum(CODE_GROUPS):
        return code
    parts = []
    start = 0
    for size in CODE_GROUPS:
        parts.append(code[start : start + size])
        start += size
    return CODE_SEPARATOR.join(parts)


# -- QR matrix ----------------------------------------------------------------------------
#
# signer.qrmatrix builds the symbol segno would (same encoding, same ISO/IEC 18004 mask
# choice) ~10x faster; the stamp draws each horizontal run of dark modules as one
# rectangle, all in one path filled once.


def qr_matrix(text: str, error: str) -> tuple[bytearray, ...]:
    """QR module matrix (rows, 1 = dark) for ``text``: ``segno.make(text, error=error,
    boost_error=False).matrix``, mask chosen by the standard's penalty."""
    return make_symbol(text, error).rows()


def _qr_operators(url: str, layout: StampLayout, geo: _Geometry) -> bytes:
    symbol = make_symbol(url, layout.error_level)
    n = symbol.n
    quiet = layout.quiet_modules
    m = geo.qr_size / (n + 2 * quiet)
    x0 = geo.qr_x + quiet * m
    ytop = geo.qr_y + geo.qr_size - quiet * m
    head = (
        f"q 1 g {geo.qr_x:.3f} {geo.qr_y:.3f} {geo.qr_size:.3f} {geo.qr_size:.3f} re f Q\n"
        f"q 0 g {m:.5f} 0 0 {-m:.5f} {x0:.3f} {ytop:.3f} cm\n"
    )
    starts, lengths = symbol.dark_runs()
    at, width = _rect_text(symbol.n, symbol.stride)
    runs = "".join(map(str.__add__, map(at.__getitem__, starts), map(width.__getitem__, lengths)))
    return (head + runs + "f Q\n").encode("ascii")


@lru_cache(maxsize=48)
def _rect_text(n: int, stride: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Per module ``r * stride + c`` the text ``"c r "``, per run length ``"w 1 re\n"``:
    a run's rectangle operator is two look-ups."""
    at = tuple(f"{p % stride} {p // stride} " for p in range(n * stride))
    width = tuple(f"{w} 1 re\n" for w in range(n + 1))
    return at, width


def _text_operators(code: str, seal: SealAppearance) -> bytes:
    geo, layout = seal.geometry, seal.layout
    text = group_code(code)
    width_1pt = seal.text_width(text, 1.0)
    size = min(layout.code_pt, geo.qr_size / width_1pt) if width_1pt else layout.code_pt
    x = geo.qr_x + (geo.qr_size - width_1pt * size) / 2
    ops = f"BT 0 g {seal.font_name} {size:.3f} Tf {x:.3f} {geo.code_y:.3f} Td ({text}) Tj ET\n"
    return ops.encode("ascii")


def build_stamp_form(
    writer: IncrementalPdfFileWriter, code: str, verify_url: str, seal: SealAppearance
) -> generic.IndirectObject:
    """Add the report's stamp form XObject (QR + code + imported seal/label) to ``writer``."""
    if not code or any(ch not in CODE_ALPHABET for ch in code):
        raise SignerError("report code must be canonical (upper-case 0-9A-Z)")
    if not verify_url or len(verify_url) > MAX_URL_CHARS or not verify_url.isascii():
        raise SignerError("verify URL must be 1..512 ASCII characters")
    resources = seal.import_into(writer)
    geo = seal.geometry
    content = (
        _qr_operators(verify_url, seal.layout, geo)
        + _text_operators(code, seal)
        + f"{seal.static_name} Do\n".encode("ascii")
    )
    form = generic.StreamObject(
        {
            pdf_name("/Type"): pdf_name("/XObject"),
            pdf_name("/Subtype"): pdf_name("/Form"),
            pdf_name("/BBox"): generic.ArrayObject(
                # pyHanko's FloatObject constructor is unannotated
                generic.FloatObject(v)  # type: ignore[no-untyped-call]
                for v in (0, 0, geo.width, geo.height)
            ),
            pdf_name("/Resources"): resources,
            # zlib level 1: a quarter of the default level's time for the ~17 kB of a
            # signed QR's rectangles, ~1 kB more in the file
            pdf_name("/Filter"): pdf_name("/FlateDecode"),
        },
        encoded_data=zlib.compress(content, 1),
    )
    return writer.add_object(form)


# -- pages --------------------------------------------------------------------------------


@dataclass
class PageInfo:
    ref: generic.IndirectObject
    obj: generic.DictionaryObject
    resources: generic.DictionaryObject | None
    box: tuple[float, float, float, float]
    rotate: int


_INHERITABLE = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")


def collect_pages(reader: Any, *, max_pages: int = MAX_PAGES) -> list[PageInfo]:
    """Walk the page tree once, resolving inherited attributes; rejects cycles, too deep or
    too large trees (:class:`PdfRejected`)."""
    try:
        root_ref = reader.root.raw_get("/Pages")
    except KeyError:
        raise PdfRejected("pdf_damaged", "the document catalog has no page tree") from None
    if not isinstance(root_ref, generic.IndirectObject):
        raise PdfRejected("pdf_damaged", "the page tree root is not an indirect object")
    pages: list[PageInfo] = []
    seen: set[tuple[int, int]] = set()
    # iterative DFS: (node ref, inherited attrs, depth)
    stack: list[tuple[generic.IndirectObject, dict[str, Any], int]] = [(root_ref, {}, 0)]
    while stack:
        ref, inherited, depth = stack.pop()
        key = (ref.idnum, ref.generation)
        if key in seen:
            raise PdfRejected("pdf_damaged", "the page tree contains a cycle")
        seen.add(key)
        if depth > MAX_PAGE_TREE_DEPTH:
            raise PdfRejected("pdf_too_complex", "the page tree is too deep")
        node = _deref(ref)
        if not isinstance(node, generic.DictionaryObject):
            raise PdfRejected("pdf_damaged", "a page tree node is not a dictionary")
        attrs = dict(inherited)
        for k in _INHERITABLE:
            v = _resolved(node, k)
            if v is not None:
                attrs[k] = v
        kids = _resolved(node, "/Kids")
        node_type = _resolved(node, "/Type")
        if node_type == "/Pages" or (node_type is None and kids is not None):
            if not isinstance(kids, generic.ArrayObject):
                raise PdfRejected("pdf_damaged", "a /Pages node has no /Kids array")
            if len(kids) > max_pages:
                raise PdfRejected("pdf_too_complex", f"more than {max_pages} pages")
            for kid in reversed(kids):
                if not isinstance(kid, generic.IndirectObject):
                    raise PdfRejected("pdf_damaged", "a page tree child is not indirect")
                stack.append((kid, attrs, depth + 1))
            continue
        if len(pages) >= max_pages:
            raise PdfRejected("pdf_too_complex", f"more than {max_pages} pages")
        pages.append(_page_info(ref, node, attrs))
    return pages


def _page_info(
    ref: generic.IndirectObject, node: generic.DictionaryObject, attrs: dict[str, Any]
) -> PageInfo:
    media = _rect(attrs.get("/MediaBox"))
    if media is None:
        raise PdfRejected("pdf_damaged", "a page has no valid /MediaBox")
    crop = _rect(attrs.get("/CropBox"))
    box = media
    if crop is not None:
        box = (
            max(media[0], crop[0]),
            max(media[1], crop[1]),
            min(media[2], crop[2]),
            min(media[3], crop[3]),
        )
        if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
            box = media
    rotate_raw = attrs.get("/Rotate", 0)
    rotate = int(rotate_raw) % 360 if isinstance(rotate_raw, int | float) else 0
    if rotate % 90:
        rotate = 0
    res = attrs.get("/Resources")
    return PageInfo(
        ref=ref,
        obj=node,
        resources=res if isinstance(res, generic.DictionaryObject) else None,
        box=box,
        rotate=rotate,
    )


def _rect(value: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(value, generic.ArrayObject) or len(value) != 4:
        return None
    try:
        a, b, c, d = (
            float(_deref(v) if isinstance(v, generic.IndirectObject) else v) for v in value
        )
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (a, b, c, d)):
        return None
    llx, urx = min(a, c), max(a, c)
    lly, ury = min(b, d), max(b, d)
    if urx - llx < 1 or ury - lly < 1:
        return None
    return llx, lly, urx, ury


def placement_matrix(
    page: PageInfo, geo: _Geometry, layout: StampLayout
) -> tuple[float, float, float, float, float, float]:
    """``cm`` operands that draw the stamp form upright in the chosen corner of the page
    as displayed (honouring /Rotate and the crop box), shrunk if the page is small."""
    llx, lly, urx, ury = page.box
    r = page.rotate
    disp_w, disp_h = (urx - llx, ury - lly) if r in (0, 180) else (ury - lly, urx - llx)
    ox, oy = layout.offset_x_mm * MM, layout.offset_y_mm * MM
    s = min(1.0, (disp_w - ox) / geo.width, (disp_h - oy) / geo.height)
    s = max(s, 0.05)
    w, h = geo.width * s, geo.height * s
    dx = ox if layout.corner.endswith("left") else disp_w - ox - w
    dy = oy if layout.corner.startswith("bottom") else disp_h - oy - h
    if r == 0:
        return s, 0.0, 0.0, s, llx + dx, lly + dy
    if r == 90:
        return 0.0, s, -s, 0.0, urx - dy, lly + dx
    if r == 180:
        return -s, 0.0, 0.0, -s, urx - dx, ury - dy
    return 0.0, -s, s, 0.0, llx + dy, ury - dx


def stamp_pages(
    writer: IncrementalPdfFileWriter,
    pages: Sequence[PageInfo],
    form_ref: generic.IndirectObject,
    seal: SealAppearance,
) -> None:
    """Append ``form_ref`` to every page: a shared ``q`` stream before the page's own
    content, then ``Q q <cm> /JzStamp Do Q`` (one stream per distinct page geometry)."""
    push_ref = writer.add_object(generic.StreamObject(stream_data=b"q\n"))
    per_geometry: dict[tuple[Any, ...], dict[str, generic.IndirectObject]] = {}
    for page in pages:
        obj = page.obj
        name = _free_name(page.resources)
        matrix = placement_matrix(page, seal.geometry, seal.layout)
        key = (matrix, name)
        streams = per_geometry.setdefault(key, {})
        cm = " ".join(f"{v:.4f}" for v in matrix)
        contents = obj.raw_get("/Contents") if "/Contents" in obj else None
        existing = _content_refs(contents)
        if existing:
            if "wrapped" not in streams:
                data = f"Q q {cm} cm /{name} Do Q\n".encode("ascii")
                streams["wrapped"] = writer.add_object(generic.StreamObject(stream_data=data))
            new_contents = [push_ref, *existing, streams["wrapped"]]
        else:
            if "bare" not in streams:
                data = f"q {cm} cm /{name} Do Q\n".encode("ascii")
                streams["bare"] = writer.add_object(generic.StreamObject(stream_data=data))
            new_contents = [streams["bare"]]
        obj[pdf_name("/Contents")] = generic.ArrayObject(new_contents)
        # pyHanko's DictionaryObject constructor is unannotated
        res = generic.DictionaryObject(page.resources or {})  # type: ignore[no-untyped-call]
        xobjects = _resolved(res, "/XObject")
        new_x = generic.DictionaryObject(  # type: ignore[no-untyped-call]
            xobjects if isinstance(xobjects, generic.DictionaryObject) else {}
        )
        new_x[pdf_name("/" + name)] = form_ref
        res[pdf_name("/XObject")] = new_x
        obj[pdf_name("/Resources")] = res
        writer.mark_update(page.ref)


def _free_name(resources: generic.DictionaryObject | None) -> str:
    used: set[str] = set()
    if resources is not None:
        x = _resolved(resources, "/XObject")
        if isinstance(x, generic.DictionaryObject):
            used = {str(k) for k in x.keys()}
    name, i = "JzStamp", 0
    while "/" + name in used:
        i += 1
        name = f"JzStamp{i}"
    return name


def _resolved(d: generic.DictionaryObject, key: str) -> Any:
    """``d[key]`` dereferenced, or ``None`` when absent or null."""
    try:
        return d[key]
    except KeyError:
        return None


_OBJ_START_RE = re.compile(rb"\s*\d+\s+\d+\s+obj\s*(<<|\[)")


def _points_to_dict_or_stream(ref: generic.IndirectObject) -> bool:
    """Whether ``ref`` is stored as a dictionary/stream, judged from the bytes at its xref
    offset -- without parsing the (possibly long) object."""
    reader = ref.get_pdf_handler()  # type: ignore[no-untyped-call]  # unannotated in pyHanko
    if not isinstance(reader, PdfFileReader):
        return False
    try:
        marker = reader.xrefs[ref.reference]
    except (KeyError, misc.PdfError):
        return False
    if not isinstance(marker, int):
        return False  # in an object stream: never a stream object
    stream = reader.stream
    pos = stream.tell()
    try:
        stream.seek(marker)
        head = stream.read(48)
    finally:
        stream.seek(pos)
    m = _OBJ_START_RE.match(head)
    return m is not None and m.group(1) == b"<<"


def _content_refs(contents: Any) -> list[generic.IndirectObject]:
    if contents is None:
        return []
    if isinstance(contents, generic.IndirectObject):
        if _points_to_dict_or_stream(contents):
            # a page's /Contents dictionary can only be a stream; no need to parse it
            return [contents]
        target = _deref(contents)
        if isinstance(target, generic.StreamObject):
            return [contents]
        contents = target
    if isinstance(contents, generic.ArrayObject):
        refs = [c for c in contents if isinstance(c, generic.IndirectObject)]
        if len(refs) != len(contents):
            raise PdfRejected("pdf_damaged", "a page content array holds a direct object")
        return refs
    raise PdfRejected("pdf_damaged", "a page has an invalid /Contents entry")
