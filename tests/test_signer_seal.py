"""Sealing: the stamped + PAdES-signed PDF, checked with tools we did not write.

poppler's pdfsig (NSS trusting the dev root), pyHanko's own validator, pdfium + zxing-cpp
for the QR code, and our verifier.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pypdfium2
import pytest
import zxingcpp
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from signer.errors import SealingError
from signer.keys import load_certificates
from signer.seal import SealedPdf, seal_pdf
from signer.stamp import StampLayout, group_code, prepare_seal
from tests.fixtures.signer import SignerEnv, make_report_pdf, pdfsig
from tests.qr_kit import QR, degraded_photo, qr_texts, render_page
from verifier.pdf import FindingCode, verify_sealed_pdf


def _pyhanko_status(pdf: bytes, roots_pem: bytes):  # type: ignore[no-untyped-def]
    reader = PdfFileReader(io.BytesIO(pdf))
    (sig,) = reader.embedded_signatures
    vc = ValidationContext(trust_roots=load_certificates(roots_pem), allow_fetching=False)
    return validate_pdf_signature(sig, vc, ts_validation_context=vc)


def test_original_is_byte_prefix_and_hashes(sealed_3p: SealedPdf, report_3p: bytes) -> None:
    assert sealed_3p.data.startswith(report_3p)
    assert len(sealed_3p.data) > len(report_3p)
    assert sealed_3p.original_sha256 == hashlib.sha256(report_3p).hexdigest()
    assert sealed_3p.sha256 == hashlib.sha256(sealed_3p.data).hexdigest()
    assert sealed_3p.page_count == 3
    # exactly one incremental update: the original's revisions + 1
    before = PdfFileReader(io.BytesIO(report_3p)).xrefs.total_revisions
    after = PdfFileReader(io.BytesIO(sealed_3p.data)).xrefs.total_revisions
    assert after == before + 1


@pytest.mark.parametrize("fixture", ["sealed_3p", "sealed_30p"])
def test_pdfsig_reports_valid_trusted_total(
    fixture: str, request: pytest.FixtureRequest, nss_db: str, tmp_path: Path
) -> None:
    sealed: SealedPdf = request.getfixturevalue(fixture)
    out = pdfsig(sealed.data, nss_db, tmp_path)
    assert "Signature Type: ETSI.CAdES.detached" in out
    assert "Signature Validation: Signature is Valid." in out
    assert "Certificate Validation: Certificate is Trusted." in out
    assert "Total document signed" in out
    assert len(re.findall(r"^Signature #\d+:", out, flags=re.M)) == 1


def test_pdfsig_untrusted_without_root(sealed_3p: SealedPdf, tmp_path: Path) -> None:
    """The trust in the test above comes from the NSS db, not from pdfsig's defaults."""
    import subprocess

    empty = tmp_path / "empty-nss"
    empty.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{empty}", "--empty-password"], check=True)
    out = pdfsig(sealed_3p.data, f"sql:{empty}", tmp_path)
    assert "Signature is Valid." in out
    assert "Certificate is Trusted." not in out


def test_pyhanko_validator_intact_trusted_untouched(
    sealed_3p: SealedPdf, signer_env: SignerEnv
) -> None:
    status = _pyhanko_status(sealed_3p.data, signer_env.roots_pem)
    assert status.intact and status.valid and status.trusted
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert status.modification_level is not None and status.modification_level.name == "NONE"
    assert status.docmdp_ok
    ts = status.timestamp_validity
    assert ts is not None and ts.intact and ts.valid and ts.trusted
    assert status.bottom_line


def test_qr_decodes_on_every_page_at_150dpi(sealed_30p: SealedPdf, signer_env: SignerEnv) -> None:
    for i in range(sealed_30p.page_count):
        texts = qr_texts(render_page(sealed_30p.data, i, 150))
        assert texts == [signer_env.verify_url], f"page {i + 1}"


def test_qr_decodes_from_degraded_scan(sealed_3p: SealedPdf, signer_env: SignerEnv) -> None:
    assert qr_texts(degraded_photo(sealed_3p.data, 2)) == [signer_env.verify_url]


def test_stamp_text_and_original_content_visible(
    sealed_3p: SealedPdf, signer_env: SignerEnv
) -> None:
    """The code is printed in groups under the QR (extractable text), and the page's own
    text survives the wrap in q/Q."""
    doc = pypdfium2.PdfDocument(sealed_3p.data)
    try:
        text = doc[0].get_textpage().get_text_range()
    finally:
        doc.close()
    assert group_code(signer_env.code) in text
    assert "扫码验真" in text
    assert "检测结论" in text
    assert "第 1 页 共 3 页" in text


def test_our_verifier_accepts(sealed_3p: SealedPdf, signer_env: SignerEnv) -> None:
    res = verify_sealed_pdf(
        sealed_3p.data,
        [signer_env.roots_pem],
        expected_code=group_code(signer_env.code).lower(),
        expected_sha256=sealed_3p.sha256,
    )
    assert res.findings == ()
    assert res.bottom_line
    assert (res.intact, res.signature_valid, res.trusted, res.timestamp_ok) == (
        True,
        True,
        True,
        True,
    )
    assert res.unmodified and res.covers_whole_document and res.qr_ok and res.sha256_ok
    assert res.qr_codes == (signer_env.code,) * 3
    assert res.signer_subject is not None and "NTRCN-91440300MA5EXXXXXX" in res.signer_subject


def test_verifier_flags_unsealed_original(report_3p: bytes, signer_env: SignerEnv) -> None:
    res = verify_sealed_pdf(report_3p, [signer_env.roots_pem], expected_code=signer_env.code)
    assert not res.bottom_line
    assert res.finding_codes == {FindingCode.NOT_SIGNED, FindingCode.QR_MISSING}
    assert [f.page for f in res.findings if f.code == FindingCode.QR_MISSING] == [1, 2, 3]


def test_verifier_wrong_expected_code_and_sha(sealed_3p: SealedPdf, signer_env: SignerEnv) -> None:
    res = verify_sealed_pdf(
        sealed_3p.data, [signer_env.roots_pem], expected_code="44030026AAAAAAAAAAA",
        expected_sha256="00" * 32,
    )
    assert res.finding_codes == {FindingCode.QR_MISMATCH, FindingCode.SHA256_MISMATCH}
    assert res.trusted and res.intact and not res.qr_ok and res.sha256_ok is False


def test_level_b_b_has_no_timestamp(signer_env: SignerEnv, report_3p: bytes) -> None:
    sealed = seal_pdf(
        report_3p, signer_env.code, signer_env.verify_url, signer_env.seal,
        signer_env.seal_key, level="B-B",
    )
    strict = verify_sealed_pdf(sealed.data, [signer_env.roots_pem], signer_env.code)
    assert strict.finding_codes == {FindingCode.TIMESTAMP_MISSING}
    relaxed = verify_sealed_pdf(
        sealed.data, [signer_env.roots_pem], signer_env.code, require_timestamp=False
    )
    assert relaxed.bottom_line and relaxed.timestamp_ok is None


def test_level_b_t_requires_timestamper(signer_env: SignerEnv, report_3p: bytes) -> None:
    with pytest.raises(SealingError):
        seal_pdf(
            report_3p, signer_env.code, signer_env.verify_url, signer_env.seal,
            signer_env.seal_key, None, "B-T",
        )


def test_level_b_lt_embeds_validation_data_in_the_signed_revision(
    signer_env: SignerEnv, report_3p: bytes
) -> None:
    from asn1crypto import crl as asn1_crl

    ca = signer_env.ca
    roots = load_certificates(signer_env.roots_pem)
    vc = ValidationContext(
        trust_roots=roots, crls=[asn1_crl.CertificateList.load(ca.crl_der())],
        allow_fetching=False,
    )
    sealed = seal_pdf(
        report_3p, signer_env.code, signer_env.verify_url, signer_env.seal,
        signer_env.seal_key, signer_env.tsa.timestamper(), "B-LT", ltv_context=vc,
    )
    reader = PdfFileReader(io.BytesIO(sealed.data))
    dss = reader.root["/DSS"]
    assert len(dss["/Certs"]) >= 2 and len(dss["/CRLs"]) >= 1
    # still one single incremental update, so our strict verifier accepts it
    res = verify_sealed_pdf(sealed.data, [signer_env.roots_pem], signer_env.code)
    assert res.bottom_line, res.findings

    # Revocation checking made mandatory and fed only with what the document carries:
    # the seal and TSA certificates are trusted because the DSS holds the CRL.
    (sig,) = reader.embedded_signatures
    dss_crls = [asn1_crl.CertificateList.load(c.get_object().data) for c in dss["/CRLs"]]

    def status_with(crls: list[asn1_crl.CertificateList]):  # type: ignore[no-untyped-def]
        hard = ValidationContext(
            trust_roots=roots, crls=crls, allow_fetching=False, revocation_mode="hard-fail"
        )
        return validate_pdf_signature(sig, hard, ts_validation_context=hard)

    with_dss = status_with(dss_crls)
    assert with_dss.intact and with_dss.trusted
    assert with_dss.timestamp_validity is not None and with_dss.timestamp_validity.trusted
    assert not status_with([]).trusted


def test_rotated_and_cropped_pages_get_an_upright_readable_stamp(
    signer_env: SignerEnv, tmp_path: Path
) -> None:
    from pypdf import PdfReader, PdfWriter

    src = PdfReader(io.BytesIO(make_report_pdf(4)))
    w = PdfWriter()
    for i, page in enumerate(src.pages):
        if i:
            page.rotation = 90 * i  # 90, 180, 270
        w.add_page(page)
    w.pages[0].cropbox.lower_left = (20, 30)
    buf = io.BytesIO()
    w.write(buf)
    sealed = seal_pdf(
        buf.getvalue(), signer_env.code, signer_env.verify_url, signer_env.seal,
        signer_env.seal_key, signer_env.tsa.timestamper(),
    )
    for i in range(4):
        img = render_page(sealed.data, i, 150)
        (result,) = [b for b in zxingcpp.read_barcodes(img, formats=QR) if b.valid]
        assert result.text == signer_env.verify_url
        # upright (as displayed), in the bottom-right quadrant
        assert result.orientation == 0, f"page {i + 1}"
        assert result.position.top_left.x > img.width * 0.6
        assert result.position.top_left.y > img.height * 0.7


def test_layout_is_configurable(signer_env: SignerEnv, report_3p: bytes) -> None:
    seal = prepare_seal("X", None, layout=StampLayout(corner="top-left", qr_mm=30))
    sealed = seal_pdf(
        report_3p, signer_env.code, signer_env.verify_url, seal, signer_env.seal_key, level="B-B"
    )
    img = render_page(sealed.data, 0, 150)
    (result,) = [b for b in zxingcpp.read_barcodes(img, formats=QR) if b.valid]
    assert result.position.top_left.x < img.width * 0.3
    assert result.position.top_left.y < img.height * 0.3
