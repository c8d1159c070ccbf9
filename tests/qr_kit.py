"""Helpers for the signed-QR tests: an independent COSE check (pycose, from PyPI) and a
QR-text reader."""

from __future__ import annotations

import base64

import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

QR = zxingcpp.barcode_formats_from_str("QRCode")


def qr_texts(image: Image.Image) -> list[str]:
    return [b.text for b in zxingcpp.read_barcodes(image, formats=QR) if b.valid]


def cose_of(url_or_p: str) -> bytes:
    p = url_or_p.rsplit("/", 1)[-1]
    assert p.startswith("JZ1")
    b32 = p[3:]
    return base64.b32decode(b32 + "=" * (-len(b32) % 8))


def pycose_verify(cose: bytes, certificate_der: bytes) -> dict[int, object]:
    """Verify a COSE_Sign1 with pycose (not our code) and return its decoded payload."""
    import cbor2
    from pycose.headers import KID, Algorithm
    from pycose.keys import EC2Key
    from pycose.keys.curves import P256
    from pycose.messages import CoseMessage, Sign1Message

    msg = CoseMessage.decode(cose)
    assert isinstance(msg, Sign1Message)
    assert msg.phdr[Algorithm].identifier == -7
    assert isinstance(msg.phdr[KID], bytes) and len(msg.phdr[KID]) == 8
    public = x509.load_der_x509_certificate(certificate_der).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    numbers = public.public_numbers()
    msg.key = EC2Key(crv=P256, x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big"))
    if not msg.verify_signature():
        raise AssertionError("pycose: the COSE_Sign1 signature does not verify")
    payload: dict[int, object] = cbor2.loads(msg.payload)
    return payload


def trust_key_cert(trust_list: dict[str, object], kid: str) -> bytes:
    keys = trust_list["keys"]
    assert isinstance(keys, list)
    (entry,) = [k for k in keys if k["kid"] == kid]
    return base64.b64decode(entry["certificate"])
