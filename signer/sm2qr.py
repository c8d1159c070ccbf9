"""SM2 QR-payload signing (INTERFACE §7.5, §7.7): a COSE_Sign1 with alg -70001 (SM2 with
SM3, default distinguishing ID, signature r‖s), and a certificate for the SM2 key issued by
the platform root (ES256), so the trust list can name the key with ``"alg": "SM2"``.

The `cryptography` package cannot hold an SM2 public key, so the certificate is built with
asn1crypto and its TBSCertificate signed with the root's key (`DevCA.root_sign`); OpenSSL
reads it (`openssl x509 -inform DER`). What is not done yet: `QrKeyStore` rotating SM2 keys
and the service signing with one (docs/national-crypto.md).
"""

from __future__ import annotations

import datetime as dt
import secrets

import cbor2
from asn1crypto import algos, keys, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization

from signer.ca import DevCA
from verifier import sm2
from verifier.qr import ALG_SM2, QrFacts, encode_sign1, protected_header, sig_structure

#: How long an SM2 QR certificate is valid (like the ES256 ones: the key's window).
VALIDITY = dt.timedelta(days=365)


def issue_sm2_certificate(
    ca: DevCA, point: bytes, label: str, purpose: str = "QR signing"
) -> bytes:
    """DER of a certificate for the SM2 public `point`, issued and ES256-signed by the root
    of `ca` (subject CN "Jianzheng {purpose} SM2 {label}")."""
    root = ca.root_certificate
    root_der = root.public_bytes(serialization.Encoding.DER)
    issuer = x509.Certificate.load(root_der)["tbs_certificate"]["subject"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = min(now + VALIDITY, root.not_valid_after_utc)
    ski = cx509.SubjectKeyIdentifier.from_public_key(root.public_key()).digest
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": secrets.randbits(63) | 1,
            "signature": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "issuer": issuer,
            "validity": x509.Validity(
                {
                    "not_before": x509.Time(name="utc_time", value=now - dt.timedelta(minutes=5)),
                    "not_after": x509.Time(name="utc_time", value=not_after),
                }
            ),
            "subject": x509.Name.build(
                {
                    "country_name": "CN",
                    "organization_name": "Jianzheng",
                    "common_name": f"Jianzheng {purpose} SM2 {label}"[:64],
                }
            ),
            "subject_public_key_info": keys.PublicKeyInfo.load(sm2.spki_der(point)),
            "extensions": [
                {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}},
                {
                    "extn_id": "key_usage",
                    "critical": True,
                    "extn_value": {"digital_signature", "non_repudiation"},
                },
                {"extn_id": "authority_key_identifier", "critical": False,
                 "extn_value": {"key_identifier": ski}},
            ],
        }
    )
    signature = ca.root_sign(tbs.dump())
    cert = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature_value": signature,
        }
    )
    der: bytes = cert.dump()
    return der


def platform_sm2_key(ca: DevCA) -> tuple[sm2.SM2PrivateKey, bytes]:
    """The platform's SM2 key that co-signs the QR trust list and the evidence certificates
    (§7.7), and its certificate (DER, issued by the root): `qr/list-sm2.key` (sealed with
    the CA passphrase) and `qr/list-sm2.der` under the CA directory, made on first use."""
    from signer.ca import _atomic_write

    key_path = ca.directory / "qr" / "list-sm2.key"
    cert_path = ca.directory / "qr" / "list-sm2.der"
    if key_path.exists() and cert_path.exists():
        return sm2.SM2PrivateKey.from_scalar(ca.open_secret(key_path.read_bytes())), (
            cert_path.read_bytes()
        )
    key = sm2.SM2PrivateKey.generate()
    cert = issue_sm2_certificate(ca, key.point, "co-signing", purpose="platform")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(key_path, ca.seal_secret(key.scalar), private=True)
    _atomic_write(cert_path, cert, private=False)
    return key, cert


def sign_sm2(facts: QrFacts, key: sm2.SM2PrivateKey, kid: bytes) -> bytes:
    """The COSE_Sign1 message (tag 18, alg -70001) over `facts`, signed with `key`."""
    protected = protected_header(ALG_SM2, kid)
    payload = cbor2.dumps(facts.to_cbor_map(), canonical=True)
    return encode_sign1(protected, payload, key.sign_raw(sig_structure(protected, payload)))
