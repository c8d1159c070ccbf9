"""Development CA, key sources and the RFC 3161 time-stamp authority."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from asn1crypto import algos, cms, core, tsp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from pyhanko_certvalidator import ValidationContext

from signer.ca import DevCA
from signer.errors import CaError, KeySourceError
from signer.keys import PKCS12KeySource, load_certificates
from signer.tsa import (
    DEV_TSA_POLICY_OID,
    TimeStampAuthority,
    TimeStampResponse,
    http_timestamper,
)
from tests.fixtures.signer import INSTITUTION_NAME, INSTITUTION_USCC, SignerEnv

FIXED = dt.datetime(2026, 11, 22, 10, 0, 0, 250000, tzinfo=dt.UTC)


def _request(
    digest: bytes = b"\x11" * 32,
    algo: str = "sha256",
    nonce: int | None = 0x1234567890ABCDEF,
    policy: str | None = None,
    cert_req: bool = True,
) -> bytes:
    req: dict[str, object] = {
        "version": "v1",
        "message_imprint": tsp.MessageImprint(
            {"hash_algorithm": algos.DigestAlgorithm({"algorithm": algo}),
             "hashed_message": digest}
        ),
        "cert_req": cert_req,
    }
    if nonce is not None:
        req["nonce"] = nonce
    if policy is not None:
        req["req_policy"] = policy
    return tsp.TimeStampReq(req).dump()


# -- CA ---------------------------------------------------------------------------------------


def test_ca_is_created_once_and_reused(tmp_path: Path) -> None:
    ca = DevCA(tmp_path / "ca")
    seal_path = ca.seal_credential(INSTITUTION_USCC, INSTITUTION_NAME)
    tsa_path = ca.tsa_credential()
    snapshot = {p: p.read_bytes() for p in (ca.root_path, seal_path, tsa_path)}
    again = DevCA(tmp_path / "ca")
    assert again.roots_pem() == ca.roots_pem()
    assert again.seal_credential(INSTITUTION_USCC, INSTITUTION_NAME) == seal_path
    assert again.tsa_credential() == tsa_path
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert (seal_path.stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "ca" / "root-key.pem").stat().st_mode & 0o777) == 0o600


def test_ca_certificates(signer_env: SignerEnv) -> None:
    root = x509.load_pem_x509_certificate(signer_env.roots_pem)
    assert root.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    seal = x509.load_der_x509_certificate(signer_env.seal_key.certificate.dump())
    assert isinstance(seal.public_key(), ec.EllipticCurvePublicKey)
    assert seal.public_key().curve.name == "secp256r1"
    assert seal.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        INSTITUTION_NAME
    )
    assert seal.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value == (
        f"NTRCN-{INSTITUTION_USCC}"
    )
    assert seal.issuer == root.subject
    seal.verify_directly_issued_by(root)
    tsa = x509.load_der_x509_certificate(signer_env.tsa.key_source.certificate.dump())
    eku = tsa.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    crl = x509.load_der_x509_crl(signer_env.ca.crl_der())
    assert crl.is_signature_valid(root.public_key())


@pytest.mark.parametrize("uscc", ["../../etc", "91440300ma5exxxxxx", "123"])
def test_ca_refuses_unsafe_uscc(tmp_path: Path, uscc: str) -> None:
    ca = DevCA(tmp_path / "ca")
    with pytest.raises(CaError):
        ca.seal_credential(uscc, "X")


def test_pkcs12_wrong_passphrase_does_not_leak(signer_env: SignerEnv) -> None:
    path = signer_env.ca.seal_credential(INSTITUTION_USCC, INSTITUTION_NAME)
    with pytest.raises(KeySourceError) as err:
        PKCS12KeySource(path, passphrase=b"s3cret-guess")
    assert "s3cret-guess" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_cached_key_signer_signs_verifiably(signer_env: SignerEnv) -> None:
    from cryptography.hazmat.primitives import hashes

    ks = signer_env.seal_key
    sig = ks.sign_raw(b"payload", "sha256")
    pub = x509.load_der_x509_certificate(ks.certificate.dump()).public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(sig, b"payload", ec.ECDSA(hashes.SHA256()))
    assert "PRIVATE" not in repr(ks) and "PRIVATE" not in repr(ks.signer)


# -- TSA --------------------------------------------------------------------------------------


def _tsa(env: SignerEnv) -> TimeStampAuthority:
    return TimeStampAuthority(env.tsa.key_source, clock=lambda: FIXED)


def test_tsa_grants_with_all_fields(signer_env: SignerEnv) -> None:
    resp = tsp.TimeStampResp.load(_tsa(signer_env).handle_request(_request()))
    assert resp["status"]["status"].native == "granted"
    token = resp["time_stamp_token"]
    sd = token["content"]
    tst = sd["encap_content_info"]["content"].parsed
    assert tst["version"].native == "v1"
    assert tst["policy"].native == DEV_TSA_POLICY_OID
    assert tst["nonce"].native == 0x1234567890ABCDEF
    assert tst["message_imprint"]["hashed_message"].native == b"\x11" * 32
    assert tst["gen_time"].native == FIXED.replace(microsecond=250000)
    assert tst["accuracy"]["millis"].native == 500
    assert tst["serial_number"].native > 0
    (si,) = sd["signer_infos"]
    attrs = {a["type"].native: a["values"][0] for a in si["signed_attrs"]}
    assert attrs["content_type"].native == "tst_info"
    tsa_cert = signer_env.tsa.key_source.certificate
    ess = attrs["signing_certificate_v2"]["certs"][0]
    assert ess["cert_hash"].native == hashlib.sha256(tsa_cert.dump()).digest()
    assert ess["issuer_serial"]["serial_number"].native == tsa_cert.serial_number
    assert attrs["message_digest"].native == hashlib.sha256(tst.dump()).digest()
    # the signature over the signed attributes verifies with the TSA certificate
    from cryptography.hazmat.primitives import hashes

    pub = x509.load_der_x509_certificate(tsa_cert.dump()).public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    signed = si["signed_attrs"].untag().dump()
    pub.verify(si["signature"].native, signed, ec.ECDSA(hashes.SHA256()))
    assert tsa_cert.dump() in {c.chosen.dump() for c in sd["certificates"]}


def test_tsa_serials_are_unique_and_certs_optional(signer_env: SignerEnv) -> None:
    tsa = _tsa(signer_env)
    serials = set()
    for _ in range(5):
        r = tsp.TimeStampResp.load(tsa.handle_request(_request(cert_req=False)))
        sd = r["time_stamp_token"]["content"]
        assert not sd["certificates"]
        serials.add(sd["encap_content_info"]["content"].parsed["serial_number"].native)
    assert len(serials) == 5


def test_tsa_token_validates_in_pyhanko(signer_env: SignerEnv) -> None:
    import asyncio

    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data

    digest = hashlib.sha256(b"document").digest()
    resp = tsp.TimeStampResp.load(signer_env.tsa.handle_request(_request(digest=digest)))
    vc = ValidationContext(
        trust_roots=load_certificates(signer_env.roots_pem), allow_fetching=False
    )
    status = asyncio.run(
        validate_tst_signed_data(resp["time_stamp_token"]["content"], vc, lambda _algo: digest)
    )
    assert status["intact"] and status["valid"]
    assert status["trust_problem_indic"] is None and status["validation_path"] is not None
    other = asyncio.run(
        validate_tst_signed_data(
            resp["time_stamp_token"]["content"], vc, lambda _algo: b"\0" * 32
        )
    )
    assert not other["intact"]


@pytest.mark.parametrize(
    ("der", "fail_info"),
    [
        (b"", "bad_data_format"),
        (b"\x30\x03\x02\x01\x01", "bad_data_format"),
        (b"not der at all", "bad_data_format"),
        (b"\x30" + b"\x82\xff\xff" + b"\0" * 5000, "bad_data_format"),
        (_request(algo="md5", digest=b"\0" * 16), "bad_alg"),
        (_request(digest=b"\0" * 20), "bad_data_format"),
        (_request(policy="1.2.3.4"), "unaccepted_policy"),
    ],
)
def test_tsa_rejects_bad_requests(signer_env: SignerEnv, der: bytes, fail_info: str) -> None:
    resp = TimeStampResponse.load(signer_env.tsa.handle_request(der))
    assert resp["status"]["status"].native == "rejection"
    assert resp["status"]["fail_info"].native == {fail_info}
    assert resp["time_stamp_token"].native is None


def test_rejection_surfaces_as_timestamp_error(signer_env: SignerEnv, report_3p: bytes) -> None:
    """A refusing TSA makes sealing fail cleanly (pyHanko reads our rejection)."""
    from signer.errors import TimestampError
    from signer.seal import seal_pdf

    strict = TimeStampAuthority(signer_env.tsa.key_source, policy_oid="1.2.3.4")
    ts = strict.timestamper()
    ts.request_cms = _with_policy(ts.request_cms, "1.2.3.5")  # type: ignore[method-assign]
    with pytest.raises(TimestampError):
        seal_pdf(
            report_3p, signer_env.code, signer_env.verify_url, signer_env.seal,
            signer_env.seal_key, ts,
        )


def _with_policy(request_cms, policy: str):  # type: ignore[no-untyped-def]
    def wrapped(message_digest, md_algorithm):  # type: ignore[no-untyped-def]
        nonce, req = request_cms(message_digest, md_algorithm)
        native = dict(req.native)
        native["req_policy"] = policy
        return nonce, tsp.TimeStampReq(native)

    return wrapped


def test_tsa_accepts_its_own_policy(signer_env: SignerEnv) -> None:
    resp = tsp.TimeStampResp.load(
        signer_env.tsa.handle_request(_request(policy=DEV_TSA_POLICY_OID))
    )
    assert resp["status"]["status"].native == "granted"


def test_tsa_needs_timestamping_certificate(signer_env: SignerEnv) -> None:
    from signer.errors import TimestampError

    with pytest.raises(TimestampError):
        TimeStampAuthority(signer_env.seal_key)


def test_external_tsa_url_must_be_https() -> None:
    from signer.errors import TimestampError

    with pytest.raises(TimestampError):
        http_timestamper("http://tsa.example.com/tsr")
    assert http_timestamper("https://tsa.example.com/tsr") is not None
    assert http_timestamper("http://127.0.0.1:8000/tsa") is not None


def test_sign_data_encoding_roundtrip() -> None:
    """Guards the DER helpers the TSA relies on (asn1crypto GeneralizedTime with millis)."""
    t = core.GeneralizedTime(FIXED)
    assert core.GeneralizedTime.load(t.dump()).native == FIXED
    assert cms.ContentType("tst_info").dotted == "1.2.840.113549.1.9.16.1.4"
