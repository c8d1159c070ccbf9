"""Tampering with a sealed report: each kind is reported as its own finding."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from signer.ca import DevCA
from signer.seal import SealedPdf, seal_pdf
from tests.fixtures.signer import (
    CONCLUSION_XY,
    INSTITUTION_NAME,
    INSTITUTION_USCC,
    SignerEnv,
    pdfsig,
)
from verifier.pdf import FindingCode, PdfUnreadable, verify_sealed_pdf


def _verify(data: bytes, env: SignerEnv, sealed: SealedPdf | None = None):  # type: ignore[no-untyped-def]
    return verify_sealed_pdf(data, [env.roots_pem], expected_code=env.code)


def _signed_range_end(data: bytes) -> int:
    reader = PdfFileReader(io.BytesIO(data))
    (sig,) = reader.embedded_signatures
    br = list(sig.byte_range)
    return int(br[1])  # start of the /Contents hole


def test_untampered_baseline(sealed_3p: SealedPdf, signer_env: SignerEnv) -> None:
    res = _verify(sealed_3p.data, signer_env)
    assert res.bottom_line and res.findings == ()


def test_flipped_byte_in_signed_range(
    sealed_3p: SealedPdf, signer_env: SignerEnv, nss_db: str, tmp_path: Path
) -> None:
    data = bytearray(sealed_3p.data)
    # a byte of the lab's original text content that keeps the file parseable
    pos = data.index(b"ReportLab Generated PDF document")
    assert pos < _signed_range_end(sealed_3p.data)
    data[pos] ^= 0x20  # 'R' -> 'r'
    res = _verify(bytes(data), signer_env)
    assert res.finding_codes == {FindingCode.DIGEST_MISMATCH}
    assert not res.intact and not res.bottom_line
    assert res.unmodified and res.qr_ok  # not confused with the other kinds
    assert "Digest Mismatch" in pdfsig(bytes(data), nss_db, tmp_path)


def _overdraw_conclusion(data: bytes) -> bytes:
    w = IncrementalPdfFileWriter(io.BytesIO(data))
    x, y = CONCLUSION_XY
    ops = (
        f"q 1 g {x - 2:.1f} {y - 4:.1f} 420 20 re f Q "
        f"q 0 g BT /Helvetica 12 Tf {x:.1f} {y:.1f} Td (FAIL) Tj ET Q"
    ).encode()
    font = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Font"),
            pdf_name("/Subtype"): pdf_name("/Type1"),
            pdf_name("/BaseFont"): pdf_name("/Helvetica"),
        }
    )
    stream = w.add_object(generic.StreamObject(stream_data=ops))
    w.add_stream_to_page(
        0,
        stream,
        resources=generic.DictionaryObject(
            {pdf_name("/Font"): generic.DictionaryObject({pdf_name("/Helvetica"): font})}
        ),
    )
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def test_incremental_update_overdrawing_the_conclusion(
    sealed_3p: SealedPdf, signer_env: SignerEnv, nss_db: str, tmp_path: Path
) -> None:
    tampered = _overdraw_conclusion(sealed_3p.data)
    assert tampered.startswith(sealed_3p.data)
    res = _verify(tampered, signer_env)
    assert res.finding_codes == {FindingCode.CONTENT_OVERDRAWN}
    (finding,) = res.findings
    assert finding.page == 1
    assert res.intact and res.trusted and not res.unmodified and not res.bottom_line
    out = pdfsig(tampered, nss_db, tmp_path)
    # pdfsig alone still calls it valid -- which is why the verifier must look further
    assert "Not total document signed" in out


def test_swapped_pages(sealed_3p: SealedPdf, signer_env: SignerEnv) -> None:
    w = IncrementalPdfFileWriter(io.BytesIO(sealed_3p.data))
    pages = w.root["/Pages"]
    kids = pages["/Kids"]
    first, second = kids.raw_get(0), kids.raw_get(1)
    kids[0], kids[1] = second, first
    w.update_container(kids)
    out = io.BytesIO()
    w.write(out)
    res = _verify(out.getvalue(), signer_env)
    assert res.finding_codes == {FindingCode.PAGES_CHANGED}
    assert res.intact and res.trusted and res.qr_ok


def test_signed_by_untrusted_key(
    signer_env: SignerEnv, report_3p: bytes, tmp_path: Path
) -> None:
    rogue = DevCA(tmp_path / "rogue-ca")
    rogue_key = rogue.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME)
    sealed = seal_pdf(
        report_3p, signer_env.code, signer_env.verify_url, signer_env.seal, rogue_key,
        signer_env.tsa.timestamper(),
    )
    res = _verify(sealed.data, signer_env)
    assert res.finding_codes == {FindingCode.UNTRUSTED_CERTIFICATE}
    assert res.intact and res.signature_valid and not res.trusted
    # ...and it is fine for whoever trusts the rogue root
    ok = verify_sealed_pdf(sealed.data, [rogue.roots_pem(), signer_env.roots_pem])
    assert ok.bottom_line, ok.findings


def test_benign_looking_update_is_still_a_modification(
    sealed_3p: SealedPdf, signer_env: SignerEnv
) -> None:
    w = IncrementalPdfFileWriter(io.BytesIO(sealed_3p.data))
    info = w.trailer["/Info"]
    info[pdf_name("/Title")] = generic.TextStringObject("Renamed")
    w.update_container(info)
    out = io.BytesIO()
    w.write(out)
    res = _verify(out.getvalue(), signer_env)
    assert res.finding_codes == {FindingCode.MODIFIED_AFTER_SIGNING}


def test_trailing_bytes_are_partial_coverage(sealed_3p: SealedPdf, signer_env: SignerEnv) -> None:
    res = _verify(sealed_3p.data + b"\n% appended junk\n", signer_env)
    assert res.finding_codes == {FindingCode.PARTIAL_COVERAGE}
    assert res.unmodified and not res.covers_whole_document


def test_timestamp_by_untrusted_tsa(
    signer_env: SignerEnv, report_3p: bytes, tmp_path: Path
) -> None:
    from signer.tsa import TimeStampAuthority

    rogue = DevCA(tmp_path / "rogue-tsa-ca")
    rogue_tsa = TimeStampAuthority(rogue.tsa_key_source())
    sealed = seal_pdf(
        report_3p, signer_env.code, signer_env.verify_url, signer_env.seal,
        signer_env.seal_key, rogue_tsa.timestamper(),
    )
    res = _verify(sealed.data, signer_env)
    assert res.finding_codes == {FindingCode.TIMESTAMP_INVALID}
    assert res.trusted and res.timestamp_ok is False


@pytest.mark.parametrize("junk", [b"", b"hello", b"%PDF-1.7\n garbage without xref"])
def test_unparseable_input_raises(junk: bytes, signer_env: SignerEnv) -> None:
    with pytest.raises(PdfUnreadable):
        verify_sealed_pdf(junk, [signer_env.roots_pem])
