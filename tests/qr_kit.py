"""Helpers for the signed-QR tests: an independent COSE check (pycose, from PyPI), a
QR-text reader, page renders and phone photos of a PDF, and the verifier run offline."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pypdfium2
import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

QR = zxingcpp.barcode_formats_from_str("QRCode")
ROOT = Path(__file__).resolve().parent.parent
#: Run the verifier with no network: a new network namespace where one can be made, and
#: socket calls that fail (and are recorded) in any case.
_GUARD = """
import socket, sys
def _refuse(*a, **k):
    raise OSError("network disabled in this test")
socket.socket.connect = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
from verifier.cli import main
sys.exit(main())
"""


def run_offline(*args: str) -> subprocess.CompletedProcess[str]:
    """`jianzheng-verify ARGS` with the network unreachable."""
    cmd = [sys.executable, "-c", _GUARD, *args]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        cmd = ["unshare", "-n", *cmd]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def render_page(pdf: bytes, index: int, dpi: int) -> Image.Image:
    """Page `index` (from 0) of `pdf` rendered at `dpi` (pdfium)."""
    doc = pypdfium2.PdfDocument(pdf)
    try:
        return doc[index].render(scale=dpi / 72).to_pil()
    finally:
        doc.close()


def degraded_photo(pdf: bytes, page: int = 1) -> Image.Image:
    """The phone photo of the interop tests (test_signer_seal): 300 dpi halved, JPEG q30,
    turned 5 degrees."""
    img = render_page(pdf, page, 300).convert("L")
    img = img.resize((img.width // 2, img.height // 2), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=30)
    photo = Image.open(io.BytesIO(buf.getvalue()))
    return photo.rotate(5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


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
