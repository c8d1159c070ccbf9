"""The key sources' fast CMS assembly (signer.keys.FastCmsMixin) yields pyHanko's own DER.

The two signers share key and certificates; ECDSA signatures are randomised, so each CMS
is compared with the signature value taken out, and the signature itself is checked
against the signed attributes with the certificate's public key.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signer.ca import DevCA
from signer.keys import FastCmsMixin, stock_cms_signer
from tests.fixtures.signer import INSTITUTION_NAME, INSTITUTION_USCC, make_report_pdf


def _without_signature(ci: cms.ContentInfo) -> bytes:
    copy = cms.ContentInfo.load(ci.dump())
    copy["content"]["signer_infos"][0]["signature"] = b""
    return copy.dump(force=True)


def test_fast_cms_is_pyhankos_der(tmp_path: Path) -> None:
    ca = DevCA(tmp_path)
    ours = ca.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME).signer
    stock = stock_cms_signer(ours)
    assert isinstance(ours, FastCmsMixin) and not isinstance(stock, FastCmsMixin)
    public = x509.load_der_x509_certificate(ours.signing_cert.dump()).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    loop = asyncio.new_event_loop()
    try:
        for i in range(3):  # the second and third reuse the cached attribute
            digest = hashlib.sha256(b"report %d" % i).digest()
            a = loop.run_until_complete(ours.async_sign(digest, "sha256", use_pades=True))
            b = loop.run_until_complete(stock.async_sign(digest, "sha256", use_pades=True))
            assert _without_signature(a) == _without_signature(b)
            info = a["content"]["signer_infos"][0]
            assert info["signed_attrs"].dump() == b["content"]["signer_infos"][0][
                "signed_attrs"
            ].dump()
            assert any(
                attr["type"].native == "signing_certificate_v2" for attr in info["signed_attrs"]
            )
            public.verify(  # raises if the signature does not cover these attributes
                info["signature"].native,
                b"\x31" + info["signed_attrs"].dump()[1:],  # as a SET, not [0] IMPLICIT
                ec.ECDSA(hashes.SHA256()),
            )
    finally:
        loop.close()


def test_fast_cms_pdf_signature_validates(tmp_path: Path) -> None:
    ca = DevCA(tmp_path)
    ours = ca.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME).signer
    meta = signers.PdfSignatureMetadata(
        field_name="Sig", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
    )
    out = io.BytesIO()
    signers.PdfSigner(meta, ours).sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(make_report_pdf(2))), output=out
    )
    sig = PdfFileReader(out).embedded_signatures[0]
    root = ca.root_certificate.public_bytes(serialization.Encoding.DER)
    vc = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(root)],
        allow_fetching=False,
        revocation_mode="soft-fail",
    )
    status = validate_pdf_signature(sig, vc)
    assert status.intact and status.valid and status.trusted
