"""Seal a lab's report PDF: stamp QR code + seal on every page and PAdES-sign, in one
incremental update, so the lab's original bytes stay a byte-identical prefix.

``seal_pdf`` is the one entry point the service calls (run it in a worker thread; it is
CPU-bound and drives pyHanko's asyncio internally). Bad input raises
:class:`~signer.errors.PdfRejected` with a stable code; everything else that can go wrong
is a server-side :class:`~signer.errors.SignerError`.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator import ValidationContext

from .errors import PdfRejected, SealingError, SignerError, TimestampError
from .keys import KeySource
from .pades import DEFAULT_LEVEL, Level, sign_writer, signature_metadata
from .stamp import (
    MAX_PAGES,
    PageInfo,
    SealAppearance,
    build_stamp_form,
    collect_pages,
    stamp_pages,
)

MAX_PDF_BYTES = 50 * 1024 * 1024
MAX_OBJECTS = 250_000
HEADER_SEARCH_BYTES = 1024
SIGNATURE_FIELD_PREFIX = "JianzhengSeal"
_MAX_FIELDS_SCANNED = 10_000

_SIZE_RE = re.compile(rb"/Size\s+(\d{1,15})")
_XREF_SUBSECTION_RE = re.compile(rb"xref\s+\d{1,15}\s+(\d{1,15})\s")
_OBJ_HEADER_RE = re.compile(rb"[\0\t\n\f\r ]*(\d{1,10})[\0\t\n\f\r ]+(\d{1,5})[\0\t\n\f\r ]+obj")
_CODE_RE = re.compile(r"^[0-9A-Z]{4,64}$")
#: The QR's URL: `…/v/{CODE}` (version 1) or `…/v/{CODE}/JZ1…` / `…/V/{CODE}/JZ1…` (§7.5).
_VERIFY_URL_RE = re.compile(r"/[vV]/[0-9A-Z]{4,64}(?:/JZ1[A-Z2-7]+)?$")

__all__ = [
    "MAX_OBJECTS",
    "MAX_PAGES",
    "MAX_PDF_BYTES",
    "InspectedPdf",
    "SealedPdf",
    "inspect_pdf",
    "seal_pdf",
]


@dataclass(frozen=True)
class SealedPdf:
    data: bytes
    sha256: str
    original_sha256: str
    page_count: int
    #: What the stamped QR codes encode.
    verify_url: str = ""


@dataclass
class InspectedPdf:
    reader: PdfFileReader
    pages: list[PageInfo]


_PARSE_ERRORS = (
    misc.PdfError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    RecursionError,
    UnicodeDecodeError,
    OverflowError,
    EOFError,
)


def inspect_pdf(pdf_bytes: bytes) -> InspectedPdf:
    """Parse and vet an uploaded PDF; raises :class:`PdfRejected` for anything unusable."""
    if not isinstance(pdf_bytes, bytes | bytearray | memoryview):
        raise PdfRejected("pdf_invalid", "the upload is not a byte string")
    data = bytes(pdf_bytes)
    if len(data) > MAX_PDF_BYTES:
        raise PdfRejected(
            "pdf_too_large", f"the PDF is {len(data)} bytes; the limit is {MAX_PDF_BYTES}"
        )
    if not data.startswith(b"%PDF-"):
        where = data.find(b"%PDF-", 0, HEADER_SEARCH_BYTES)
        if where < 0:
            raise PdfRejected("pdf_invalid", "the upload is not a PDF (no %PDF- header)")
        raise PdfRejected("pdf_damaged", "the PDF header is not at the start of the file")
    _precheck_object_count(data)
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=True)
        trailer = reader.trailer_view
        if "/Encrypt" in trailer or reader.security_handler is not None:
            raise PdfRejected("pdf_encrypted", "the PDF is encrypted; upload it unprotected")
        size = trailer.get("/Size")
        if isinstance(size, int) and size > MAX_OBJECTS:
            raise PdfRejected("pdf_too_complex", f"the PDF has more than {MAX_OBJECTS} objects")
        root = reader.root
        if not isinstance(root, generic.DictionaryObject):
            raise PdfRejected("pdf_damaged", "the PDF has no document catalog")
        _check_xref_offsets(reader, data)
        pages = collect_pages(reader, max_pages=MAX_PAGES)
    except PdfRejected:
        raise
    except misc.PdfDecodeLimitError:
        raise PdfRejected(
            "pdf_too_complex", "a stream in the PDF decodes to too much data"
        ) from None
    except _PARSE_ERRORS as exc:
        raise PdfRejected(
            "pdf_damaged", f"the PDF structure is damaged ({_describe(exc)})"
        ) from None
    if not pages:
        raise PdfRejected("pdf_empty", "the PDF has no pages")
    return InspectedPdf(reader=reader, pages=pages)


def _check_xref_offsets(reader: PdfFileReader, data: bytes) -> None:
    """Every in-use xref entry must point at its own ``N G obj`` header.

    The incremental update keeps the lab's bytes as they are, so a cross-reference table
    pointing into nowhere would survive sealing unnoticed (and render wrongly later).
    """
    count = 0
    for section in reader.xrefs._xref_sections:  # noqa: SLF001 - no public iterator
        xref_data = section.xref_data
        for idnum, (generation, offset) in xref_data.standard_xrefs.items():
            count += 1
            if count > MAX_OBJECTS:
                raise PdfRejected("pdf_too_complex", f"more than {MAX_OBJECTS} objects")
            m = _OBJ_HEADER_RE.match(data, offset, offset + 64)
            if m is None or int(m.group(1)) != idnum or int(m.group(2)) != generation:
                raise PdfRejected(
                    "pdf_damaged",
                    f"the cross-reference entry of object {idnum} points to the wrong place",
                )


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _precheck_object_count(data: bytes) -> None:
    """Cheap scan before parsing, so a PDF bomb never reaches the parser."""
    if data.count(b"obj") > 2 * MAX_OBJECTS:  # every object has "obj" and "endobj"
        raise PdfRejected("pdf_too_complex", f"the PDF has more than {MAX_OBJECTS} objects")
    for pattern in (_SIZE_RE, _XREF_SUBSECTION_RE):
        for m in pattern.finditer(data):
            if int(m.group(1)) > MAX_OBJECTS:
                raise PdfRejected(
                    "pdf_too_complex", f"the PDF declares more than {MAX_OBJECTS} objects"
                )


def _field_name(reader: PdfFileReader, code: str) -> str:
    """A signature field name not yet used in the document."""
    names: set[str] = set()
    try:
        fields_arr = reader.root["/AcroForm"]["/Fields"]
        for i, f in enumerate(fields_arr):
            if i >= _MAX_FIELDS_SCANNED:
                break
            t = f.get_object().get("/T")
            if t is not None:
                names.add(str(t.get_object()))
    except (KeyError, TypeError, AttributeError, misc.PdfError):
        pass
    base = f"{SIGNATURE_FIELD_PREFIX}-{code}"
    name, i = base, 1
    while name in names:
        i += 1
        name = f"{base}-{i}"
    return name


def seal_pdf(
    pdf_bytes: bytes,
    code: str,
    verify_url: str,
    institution_seal: SealAppearance,
    key_source: KeySource,
    timestamper: TimeStamper | None = None,
    level: Level = DEFAULT_LEVEL,
    *,
    ltv_context: ValidationContext | None = None,
    reason: str | None = "检测报告电子签章 / inspection report seal",
) -> SealedPdf:
    """Stamp and sign ``pdf_bytes``.

    ``code`` is the canonical report code (upper-case ``0-9A-Z``); ``verify_url`` the URL
    the QR code encodes (``{PUBLIC_BASE_URL}/v/{code}``, or with the signed payload of
    INTERFACE §7.5 ``…/V/{code}/JZ1…``). ``level`` is ``B-T`` by default
    (needs ``timestamper``), ``B-B`` or ``B-LT`` (needs ``timestamper`` and
    ``ltv_context``: trust roots plus the CA's CRLs, no fetching).
    """
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise SealingError("report code must be canonical: upper-case 0-9A-Z, no separators")
    if not _VERIFY_URL_RE.search(verify_url) or not (
        verify_url.endswith("/v/" + code) or f"/{code}/JZ1" in verify_url.upper()
    ):
        raise SealingError("verify URL must end in /v/{code} or /v/{code}/JZ1… (/V/ alike)")
    meta = signature_metadata(
        "placeholder", level, ltv_context=ltv_context, reason=reason
    )  # validates level / ltv settings before any work
    if level != "B-B" and timestamper is None:
        raise SealingError(f"PAdES {level} needs a time-stamp authority")

    inspected = inspect_pdf(pdf_bytes)
    original = bytes(pdf_bytes)
    reader = inspected.reader
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(original), prev=reader)
        form = build_stamp_form(writer, code, verify_url, institution_seal)
        stamp_pages(writer, inspected.pages, form, institution_seal)
        meta = signature_metadata(
            _field_name(reader, code), level, ltv_context=ltv_context, reason=reason
        )
    except PdfRejected:
        raise
    except SignerError:
        raise
    except _PARSE_ERRORS as exc:
        raise PdfRejected(
            "pdf_damaged", f"the PDF could not be stamped ({_describe(exc)})"
        ) from None

    try:
        data = sign_writer(writer, key_source, meta, level=level, timestamper=timestamper)
    except SignerError:
        raise
    except (TimestampRequestError, OSError) as exc:
        why = str(exc)[:300] or type(exc).__name__
        raise TimestampError(f"time-stamp authority failed: {why}") from None
    except misc.PdfReadError as exc:
        raise PdfRejected(
            "pdf_damaged", f"the PDF could not be signed ({_describe(exc)})"
        ) from None
    except Exception as exc:
        raise SealingError(f"signing failed ({type(exc).__name__})") from exc

    if not data.startswith(original):
        raise SealingError("internal error: the original bytes are not a prefix of the result")
    return SealedPdf(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        original_sha256=hashlib.sha256(original).hexdigest(),
        page_count=len(inspected.pages),
        verify_url=verify_url,
    )
