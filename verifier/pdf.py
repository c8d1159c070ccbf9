"""Verification of a sealed report PDF (the platform's QR stamp + PAdES signature).

:func:`verify_sealed_pdf` checks, in order:

1. a signature is present and is PAdES (``/ETSI.CAdES.detached``);
2. the signature is intact: the digest over the signed byte ranges matches;
3. the signature value verifies against the signer's certificate;
4. the signer's certificate chains to one of the pinned trust roots (nothing fetched);
5. a signature time-stamp (RFC 3161) is present, intact and chains to the pinned roots;
6. nothing was appended after signing: any incremental update after the signed revision
   fails, classified as over-drawn page content, changed pages (added, removed, swapped),
   or another modification (metadata, form data, validation data);
7. the signature covers the whole file;
8. every page carries a QR code (rendered with pdfium, decoded with zxing-cpp) naming
   ``.../v/{expected_code}`` (or, without an expected code, the same code on every page);
9. the file's SHA-256 equals the expected one (the anchored record's).

Checks return a :class:`PdfVerification`; only input that cannot be parsed as a PDF raises
(:class:`PdfUnreadable`). This module imports nothing else of ours.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import io
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509

from verifier.chain import canonical_code
from verifier.errors import VerifierError

MAX_PDF_BYTES = 64 * 1024 * 1024
MAX_TRUST_ROOTS = 64
MAX_QR_PAGES = 500
MAX_REACHABLE_OBJECTS = 20_000
QR_RENDER_DPI = 150
#: Most pixels one page is rendered to for the QR check (A3 at 150 dpi is ~4.4 million):
#: a page with a huge MediaBox is rendered smaller, never to gigabytes.
MAX_RENDER_PIXELS = 6_000_000
PADES_SUBFILTER = "/ETSI.CAdES.detached"
_CODE_RE = re.compile(r"^[0-9A-Z]{1,64}$")

# pdfium is not thread-safe; pypdfium2 serialises internally, but a module lock keeps
# the render + decode pair atomic and explicit.
_PDFIUM_LOCK = threading.Lock()


class PdfUnreadable(VerifierError, ValueError):
    """The input is not a PDF this verifier can parse (or exceeds its hard limits)."""

    default_code = "pdf_unreadable"


class FindingCode(enum.StrEnum):
    NOT_SIGNED = "not_signed"
    NOT_PADES = "not_pades"
    SIGNATURE_UNREADABLE = "signature_unreadable"
    DIGEST_MISMATCH = "digest_mismatch"
    SIGNATURE_INVALID = "signature_invalid"
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"
    CERTIFICATE_REVOKED = "certificate_revoked"
    TIMESTAMP_MISSING = "timestamp_missing"
    TIMESTAMP_INVALID = "timestamp_invalid"
    CONTENT_OVERDRAWN = "content_overdrawn"
    PAGES_CHANGED = "pages_changed"
    MODIFIED_AFTER_SIGNING = "modified_after_signing"
    PARTIAL_COVERAGE = "partial_coverage"
    QR_MISSING = "qr_missing"
    QR_MISMATCH = "qr_mismatch"
    SHA256_MISMATCH = "sha256_mismatch"


@dataclass(frozen=True)
class Finding:
    """One failed check: a stable ``code``, a sentence, and the page (1-based) if any."""

    code: FindingCode
    message: str
    page: int | None = None


@dataclass(frozen=True)
class PdfVerification:
    """Result of :func:`verify_sealed_pdf`: one field per check, then findings.

    ``sha256_ok`` and ``timestamp_ok`` are ``None`` when the check was not requested.
    """

    sha256: str
    page_count: int
    signed: bool
    pades: bool
    intact: bool
    signature_valid: bool
    trusted: bool
    timestamp_ok: bool | None
    unmodified: bool
    covers_whole_document: bool
    qr_ok: bool
    sha256_ok: bool | None
    qr_codes: tuple[str | None, ...]
    signer_subject: str | None
    timestamp: dt.datetime | None
    findings: tuple[Finding, ...]
    bottom_line: bool

    @property
    def finding_codes(self) -> frozenset[FindingCode]:
        return frozenset(f.code for f in self.findings)


def load_trust_roots(
    roots: Iterable[bytes | str | asn1_x509.Certificate],
) -> list[asn1_x509.Certificate]:
    """Certificates from PEM (possibly several per item), DER or asn1crypto objects."""
    result: list[asn1_x509.Certificate] = []
    for item in roots:
        if isinstance(item, asn1_x509.Certificate):
            result.append(item)
            continue
        data = item.encode("ascii") if isinstance(item, str) else bytes(item)
        try:
            if asn1_pem.detect(data):
                for _, _, der in asn1_pem.unarmor(data, multiple=True):
                    result.append(_load_cert(der))
            else:
                result.append(_load_cert(data))
        except ValueError as exc:
            raise ValueError(f"unreadable trust root: {exc}") from None
        if len(result) > MAX_TRUST_ROOTS:
            raise ValueError(f"more than {MAX_TRUST_ROOTS} trust roots")
    return result


def _load_cert(der: bytes) -> asn1_x509.Certificate:
    cert = asn1_x509.Certificate.load(der)
    _ = cert.native  # force a full parse so malformed input raises here
    return cert


def verify_sealed_pdf(
    pdf_bytes: bytes,
    trust_roots: Iterable[bytes | str | asn1_x509.Certificate],
    expected_code: str | None = None,
    expected_sha256: str | None = None,
    *,
    require_timestamp: bool = True,
    check_qr: bool = True,
    qr_pages: int | None = None,
) -> PdfVerification:
    """Verify a sealed report PDF against pinned ``trust_roots`` (see module docstring).

    ``expected_code`` is accepted in any case and with separators. ``require_timestamp``
    may be switched off for PAdES B-B documents. ``qr_pages`` limits the QR check to the
    first pages (e.g. 1 to learn which report a file names; None checks every page, up
    to MAX_QR_PAGES). Raises :class:`PdfUnreadable` when the bytes cannot be parsed or
    rendered as a PDF.
    """
    from pyhanko.pdf_utils import misc
    from pyhanko.pdf_utils.reader import PdfFileReader

    data = bytes(pdf_bytes)
    if len(data) > MAX_PDF_BYTES:
        raise PdfUnreadable(f"the file exceeds {MAX_PDF_BYTES} bytes", code="pdf_too_large")
    if not data.startswith(b"%PDF-"):
        raise PdfUnreadable("not a PDF (no %PDF- header)")
    roots = load_trust_roots(trust_roots)
    sha256 = hashlib.sha256(data).hexdigest()
    findings: list[Finding] = []

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=True)
        if reader.security_handler is not None:
            raise PdfUnreadable("the PDF is encrypted", code="pdf_encrypted")
        current_pages = _page_refs(reader.root)
        signatures = list(reader.embedded_signatures)
    except PdfUnreadable:
        raise
    except (misc.PdfError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise PdfUnreadable(f"the PDF cannot be parsed: {_first_line(exc)}") from None

    sig_result = _SignatureChecks()
    if not signatures:
        findings.append(Finding(FindingCode.NOT_SIGNED, "the PDF carries no signature"))
    else:
        sig_result = _check_signature(reader, signatures[-1], roots, current_pages, findings)

    timestamp_ok: bool | None = sig_result.timestamp_ok
    if timestamp_ok is None and require_timestamp and signatures:
        timestamp_ok = False
        findings.append(
            Finding(FindingCode.TIMESTAMP_MISSING, "the signature carries no time-stamp")
        )
    if not require_timestamp and sig_result.timestamp_ok is None:
        timestamp_ok = None

    # 8. QR code on every page
    qr_codes: tuple[str | None, ...] = ()
    qr_ok = True
    if check_qr:
        qr_codes, qr_ok = _check_qr(
            data, len(current_pages), expected_code, findings, qr_pages=qr_pages
        )

    # 9. SHA-256 of the whole file
    sha256_ok: bool | None = None
    if expected_sha256 is not None:
        sha256_ok = sha256 == expected_sha256.strip().lower()
        if not sha256_ok:
            findings.append(
                Finding(
                    FindingCode.SHA256_MISMATCH,
                    f"the file's SHA-256 {sha256} differs from the expected {expected_sha256}",
                )
            )

    return PdfVerification(
        sha256=sha256,
        page_count=len(current_pages),
        signed=bool(signatures),
        pades=sig_result.pades,
        intact=sig_result.intact,
        signature_valid=sig_result.valid,
        trusted=sig_result.trusted,
        timestamp_ok=timestamp_ok,
        unmodified=sig_result.unmodified,
        covers_whole_document=sig_result.covers_whole,
        qr_ok=qr_ok,
        sha256_ok=sha256_ok,
        qr_codes=qr_codes,
        signer_subject=sig_result.subject,
        timestamp=sig_result.timestamp,
        findings=tuple(findings),
        bottom_line=not findings,
    )


@dataclass
class _SignatureChecks:
    pades: bool = False
    intact: bool = False
    valid: bool = False
    trusted: bool = False
    timestamp_ok: bool | None = None
    unmodified: bool = False
    covers_whole: bool = False
    subject: str | None = None
    timestamp: dt.datetime | None = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _run(coro: Any) -> Any:
    """Run a coroutine from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _check_signature(
    reader: Any,
    sig: Any,
    roots: Sequence[asn1_x509.Certificate],
    current_pages: list[tuple[int, int]],
    findings: list[Finding],
) -> _SignatureChecks:
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    out = _SignatureChecks()
    # 1. PAdES
    subfilter = sig.sig_object.get("/SubFilter")
    out.pades = str(subfilter) == PADES_SUBFILTER
    if not out.pades:
        findings.append(
            Finding(FindingCode.NOT_PADES, f"signature SubFilter is {subfilter}, not PAdES")
        )

    # 2-5. pyHanko's validator against the pinned roots, no fetching
    vc = ValidationContext(trust_roots=list(roots), allow_fetching=False)
    try:
        status = _run(
            async_validate_pdf_signature(
                sig, signer_validation_context=vc, ts_validation_context=vc, skip_diff=True
            )
        )
    except Exception as exc:  # a malformed CMS blob is a finding, not a crash
        findings.append(
            Finding(
                FindingCode.SIGNATURE_UNREADABLE,
                f"the signature could not be validated: {_first_line(exc)}",
            )
        )
        return out

    out.intact = bool(status.intact)
    out.valid = bool(status.valid)
    out.trusted = bool(status.trusted)
    cert = status.signing_cert
    out.subject = cert.subject.human_friendly if cert is not None else None
    if not out.intact:
        findings.append(
            Finding(
                FindingCode.DIGEST_MISMATCH,
                "the signed bytes were altered: their digest does not match the signature",
            )
        )
    elif not out.valid:
        findings.append(
            Finding(FindingCode.SIGNATURE_INVALID, "the signature value does not verify")
        )
    elif status.revoked:
        findings.append(
            Finding(FindingCode.CERTIFICATE_REVOKED, "the signer's certificate is revoked")
        )
    elif not out.trusted:
        findings.append(
            Finding(
                FindingCode.UNTRUSTED_CERTIFICATE,
                f"the signer's certificate ({out.subject}) does not chain to a trusted root",
            )
        )

    ts = status.timestamp_validity
    if ts is not None:
        out.timestamp_ok = bool(ts.intact and ts.valid and ts.trusted)
        out.timestamp = ts.timestamp
        if not out.timestamp_ok:
            findings.append(
                Finding(
                    FindingCode.TIMESTAMP_INVALID,
                    "the signature time-stamp is not intact, not valid or not trusted",
                )
            )

    # 6. modifications after signing
    total = reader.xrefs.total_revisions
    signed_rev = sig.signed_revision
    out.unmodified = signed_rev == total - 1
    if not out.unmodified:
        findings.append(_classify_update(reader, signed_rev, total, current_pages))

    # 7. coverage of the whole file
    out.covers_whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    if out.unmodified and not out.covers_whole:
        findings.append(
            Finding(
                FindingCode.PARTIAL_COVERAGE,
                "the signature does not cover the whole file "
                f"(coverage: {status.coverage.name if status.coverage else 'unknown'})",
            )
        )
    return out


def _classify_update(
    reader: Any, signed_rev: int, total: int, current_pages: list[tuple[int, int]]
) -> Finding:
    """Name what an incremental update after the signature changed."""
    changed: set[tuple[int, int]] = set()
    for rev in range(signed_rev + 1, total):
        changed |= {(r.idnum, r.generation) for r in reader.xrefs.explicit_refs_in_revision(rev)}
        changed |= {(r.idnum, r.generation) for r in reader.xrefs.refs_freed_in_revision(rev)}
    updates = total - 1 - signed_rev
    try:
        signed_pages = _page_refs(reader.get_historical_resolver(signed_rev).root)
    except Exception:  # an unreadable historical page tree counts as changed pages
        signed_pages = []
    if signed_pages != current_pages:
        return Finding(
            FindingCode.PAGES_CHANGED,
            f"{updates} update(s) after signing changed the pages: "
            f"{len(signed_pages)} signed, {len(current_pages)} now"
            + (", reordered or replaced" if len(signed_pages) == len(current_pages) else ""),
        )
    for index, page in enumerate(current_pages):
        if _reachable(reader, page) & changed:
            return Finding(
                FindingCode.CONTENT_OVERDRAWN,
                f"{updates} update(s) after signing changed what page {index + 1} shows "
                "(content, resources or annotations)",
                page=index + 1,
            )
    return Finding(
        FindingCode.MODIFIED_AFTER_SIGNING,
        f"{updates} update(s) after signing changed {len(changed)} object(s) outside "
        "the pages' content",
    )


def _reachable(reader: Any, page: tuple[int, int]) -> set[tuple[int, int]]:
    """Indirect objects reachable from a page (content, resources, annotations...),
    not following /Parent; bounded by MAX_REACHABLE_OBJECTS."""
    from pyhanko.pdf_utils import generic

    seen: set[tuple[int, int]] = {page}
    stack: list[Any] = [reader.get_object(generic.Reference(page[0], page[1], pdf=reader))]
    while stack and len(seen) < MAX_REACHABLE_OBJECTS:
        obj = stack.pop()
        if isinstance(obj, generic.IndirectObject):
            key = (obj.idnum, obj.generation)
            if key in seen:
                continue
            seen.add(key)
            obj = reader.get_object(obj.reference)
        if isinstance(obj, generic.DictionaryObject):
            for k, v in obj.items():
                if k != "/Parent" and k != "/P":
                    stack.append(v)
        elif isinstance(obj, generic.ArrayObject):
            stack.extend(obj)
    return seen


def _page_refs(root: Any) -> list[tuple[int, int]]:
    """Page object references in document order (cycle-safe, bounded)."""
    from pyhanko.pdf_utils import generic

    out: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    stack: list[Any] = [root.raw_get("/Pages")]
    while stack:
        ref = stack.pop()
        if not isinstance(ref, generic.IndirectObject):
            raise ValueError("page tree node is not an indirect object")
        key = (ref.idnum, ref.generation)
        if key in seen:
            raise ValueError("page tree contains a cycle")
        seen.add(key)
        if len(seen) > MAX_REACHABLE_OBJECTS:
            raise ValueError("page tree too large")
        # resolve through the reference's own handler (a historical revision stays one)
        node: Any = cast(Any, ref).get_object()
        if "/Kids" in node:
            stack.extend(reversed(list(node["/Kids"])))
        else:
            out.append(key)
    return out


def _check_qr(
    data: bytes,
    page_count: int,
    expected_code: str | None,
    findings: list[Finding],
    *,
    qr_pages: int | None = None,
) -> tuple[tuple[str | None, ...], bool]:
    expected = canonical_code(expected_code) if expected_code is not None else None
    if qr_pages is None:
        texts = _decode_pages(data, page_count)
    else:
        texts = _decode_pages(data, min(page_count, max(1, qr_pages)), pad=False)
    codes: list[str | None] = []
    ok = True
    for index, page_texts in enumerate(texts):
        page_no = index + 1
        found = [c for c in (_code_from_url(t) for t in page_texts) if c is not None]
        if not page_texts or (not found and expected is None):
            codes.append(None)
            ok = False
            findings.append(
                Finding(FindingCode.QR_MISSING, "no verification QR code found", page=page_no)
            )
            continue
        code = found[0] if found else None
        codes.append(code)
        if expected is not None and expected not in found:
            ok = False
            findings.append(
                Finding(
                    FindingCode.QR_MISMATCH,
                    f"the QR code names {code or page_texts[0]!r}, not {expected!r}",
                    page=page_no,
                )
            )
    if expected is None and ok and len(set(codes)) > 1:
        ok = False
        findings.append(
            Finding(FindingCode.QR_MISMATCH, "pages carry QR codes for different reports")
        )
    return tuple(codes), ok


def _code_from_url(text: str) -> str | None:
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # `/v/{CODE}` (version 1) or `/v/{CODE}/JZ1…`, `/V/{CODE}/JZ1…` (signed payload, §7.5)
    m = re.fullmatch(r"(?:/.*)?/v/([^/]+)(?:/JZ1[A-Z2-7]+)?/?", parts.path) or re.fullmatch(
        r"(?:/.*)?/V/([^/]+)/JZ1[A-Z2-7]+/?", parts.path
    )
    if m is None or not _CODE_RE.fullmatch(m.group(1)):
        return None
    return m.group(1)


def render_scale(width_pt: float, height_pt: float, dpi: int = QR_RENDER_DPI) -> float:
    """The pdfium scale for a page: `dpi`, but never more than MAX_RENDER_PIXELS."""
    area = max(width_pt, 1.0) * max(height_pt, 1.0)
    return min(dpi / 72, float((MAX_RENDER_PIXELS / area) ** 0.5))


def _decode_pages(data: bytes, page_count: int, *, pad: bool = True) -> list[list[str]]:
    """QR texts per page, from pdfium renders at QR_RENDER_DPI within MAX_RENDER_PIXELS
    (first MAX_QR_PAGES); with `pad`, pages beyond those rendered count as without QR.
    Any failure to render (a damaged page, memory) makes the file unreadable."""
    import pypdfium2
    import zxingcpp

    _QR_ONLY = zxingcpp.barcode_formats_from_str("QRCode")
    results: list[list[str]] = []
    with _PDFIUM_LOCK:
        try:
            doc = pypdfium2.PdfDocument(data)
        except Exception as exc:
            raise PdfUnreadable(f"the PDF cannot be rendered: {_first_line(exc)}") from None
        try:
            n = min(len(doc), page_count, MAX_QR_PAGES)
            for i in range(n):
                try:
                    width, height = doc.get_page_size(i)
                    page = doc[i]
                    try:
                        bitmap = page.render(
                            scale=render_scale(width, height), grayscale=True
                        )
                        image = bitmap.to_pil()
                        found = zxingcpp.read_barcodes(image, formats=_QR_ONLY)
                        results.append([str(b.text) for b in found if b.valid])
                    finally:
                        page.close()
                except (Exception, MemoryError) as exc:
                    raise PdfUnreadable(
                        f"page {i + 1} cannot be rendered: {_first_line(exc)}"
                    ) from None
        finally:
            doc.close()
    if pad:
        results.extend([] for _ in range(page_count - len(results)))
    return results
