"""Bad uploads are refused with a stable PdfRejected code, quickly, never a crash or hang."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter

from signer import seal as seal_mod
from signer.errors import PdfRejected
from signer.seal import MAX_OBJECTS, MAX_PDF_BYTES, inspect_pdf, seal_pdf
from tests.fixtures.signer import SignerEnv, make_report_pdf, raw_pdf

CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"


def _encrypted() -> bytes:
    w = PdfWriter(clone_from=PdfReader(io.BytesIO(make_report_pdf(1))))
    w.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def _bad_startxref() -> bytes:
    data = make_report_pdf(1)
    head, _, tail = data.rpartition(b"startxref")
    return head + b"startxref\n" + b"17" + tail[tail.index(b"\n%%EOF"):]


def _broken_xref_entries() -> bytes:
    data = bytearray(make_report_pdf(1))
    xref = data.rindex(b"\nxref\n") + 1
    # overwrite the offsets of the first in-use entries with garbage positions
    first = data.index(b" 00000 n", xref) - 10
    data[first : first + 10] = b"0000000003"
    second = data.index(b" 00000 n", first + 20) - 10
    data[second : second + 10] = b"0000000005"
    return bytes(data)


def _truncated() -> bytes:
    data = make_report_pdf(1)
    return data[: len(data) * 2 // 3]


def _zero_pages() -> bytes:
    return raw_pdf([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"])


def _page_tree_cycle() -> bytes:
    return raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                    b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>"])


def _many_objects() -> bytes:
    n = MAX_OBJECTS + 10
    bodies = [CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE]
    bodies += [b"null"] * n
    return raw_pdf(bodies)


def _declares_huge_size() -> bytes:
    data = raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE])
    return data.replace(b"/Size 4 ", b"/Size 900000000 ")


CASES = {
    "empty": (b"", "pdf_invalid"),
    "text": (b"hello, this is not a PDF", "pdf_invalid"),
    "png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "pdf_invalid"),
    "encrypted": (_encrypted, "pdf_encrypted"),
    "bad_startxref": (_bad_startxref, "pdf_damaged"),
    "broken_xref_entries": (_broken_xref_entries, "pdf_damaged"),
    "truncated": (_truncated, "pdf_damaged"),
    "zero_pages": (_zero_pages, "pdf_empty"),
    "page_tree_cycle": (_page_tree_cycle, "pdf_damaged"),
    "object_bomb": (_many_objects, "pdf_too_complex"),
    "declared_size_bomb": (_declares_huge_size, "pdf_too_complex"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_rejected_with_its_code(name: str, signer_env: SignerEnv) -> None:
    make, code = CASES[name]
    data = make() if callable(make) else make
    with pytest.raises(PdfRejected) as err:
        seal_pdf(
            data, signer_env.code, signer_env.verify_url, signer_env.seal, signer_env.seal_key,
            level="B-B",
        )
    assert err.value.code == code, err.value.message
    assert err.value.message


def test_over_the_size_limit(signer_env: SignerEnv) -> None:
    data = b"%PDF-1.7\n" + b"0" * MAX_PDF_BYTES
    with pytest.raises(PdfRejected) as err:
        inspect_pdf(data)
    assert err.value.code == "pdf_too_large"


def test_too_many_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seal_mod, "MAX_PAGES", 5)
    with pytest.raises(PdfRejected) as err:
        inspect_pdf(make_report_pdf(6))
    assert err.value.code == "pdf_too_complex"
    assert len(inspect_pdf(make_report_pdf(5)).pages) == 5


def test_valid_minimal_pdf_is_accepted(signer_env: SignerEnv) -> None:
    """The crafted-PDF helper itself yields acceptable input (so the cases above fail for
    the reason they name)."""
    data = raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE])
    sealed = seal_pdf(
        data, signer_env.code, signer_env.verify_url, signer_env.seal, signer_env.seal_key,
        level="B-B",
    )
    assert sealed.page_count == 1 and sealed.data.startswith(data)
