"""SM2 (with SM3, GB/T 32918) and SM3 (GB/T 32905) against a tool we did not write: Debian's
`openssl` command line (OpenSSL 3). Signatures we make verify with `openssl pkeyutl` under
the default and a configured distinguishing ID, and signatures `openssl` makes verify with
ours; keys travel as PKCS#8 / SubjectPublicKeyInfo both ways; SM3 digests agree with
`openssl dgst -sm3`. Also: SM2 witness keys at intake (an openssl-made key and signature)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from service.client import JianzhengClient
from service.domain import seals
from service.errors import Invalid
from service.state import ServiceState
from service.storage.blobs import sm3_file
from service.storage.models import Record
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import VALID_ID_NUMBER, Chain, WitnessSigner, build_chain, created, seal_body
from verifier import sm2
from verifier.merkle import hasher
from verifier.witness import body_signature_problem

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")

#: GB/T 32905-2016 Appendix A.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], input=data, capture_output=True, timeout=60)


def openssl_key(tmp: Path) -> tuple[Path, Path]:
    key, pub = tmp / "key.pem", tmp / "pub.pem"
    assert openssl("genpkey", "-algorithm", "SM2", "-out", str(key)).returncode == 0
    assert openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub)).returncode == 0
    return key, pub


def pem_der(path: Path) -> bytes:
    lines = path.read_text().strip().splitlines()
    return base64.b64decode("".join(x for x in lines if not x.startswith("-----")))


def openssl_verify(pub: Path, msg: Path, sig: Path, distid: str) -> bool:
    r = openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-in", str(msg),
                "-sigfile", str(sig), "-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{distid}")
    return r.returncode == 0 and b"Signature Verified Successfully" in r.stdout


def test_openssl_has_sm2_and_sm3() -> None:
    r = openssl("version")
    assert r.returncode == 0 and r.stdout.startswith(b"OpenSSL 3"), r.stdout


def test_sm3_digests_agree_with_openssl(tmp_path: Path) -> None:
    assert hasher("sm3")(b"abc").hex() == SM3_ABC
    for i, data in enumerate([b"", b"abc", b"abcd" * 16, bytes(range(256)) * 5000]):
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        r = openssl("dgst", "-sm3", "-r", str(path))
        assert r.returncode == 0, r.stderr
        theirs = r.stdout.split()[0].decode()
        assert hasher("sm3")(data).hex() == theirs == sm3_file(path)
    assert theirs != hasher("sm3")(data[:-1]).hex()


@pytest.mark.parametrize("distid", ["1234567812345678", "ALICE123@YAHOO.COM"])
def test_our_signatures_verify_with_openssl(tmp_path: Path, distid: str) -> None:
    key = sm2.SM2PrivateKey.generate()
    pub = tmp_path / "pub.pem"
    pub.write_text(sm2.spki_pem(key.point))
    msg = tmp_path / "msg"
    msg.write_bytes("见证取样 封志 YP2026112200017".encode())
    sig = tmp_path / "sig.der"
    sig.write_bytes(key.sign_der(msg.read_bytes(), distid.encode()))
    assert openssl_verify(pub, msg, sig, distid)
    # the same signature under another ID, or of another message, does not verify
    other = "1234567812345678" if distid != "1234567812345678" else "ALICE123@YAHOO.COM"
    assert not openssl_verify(pub, msg, sig, other)
    msg.write_bytes(msg.read_bytes() + b"!")
    assert not openssl_verify(pub, msg, sig, distid)
    # our private key, as PKCS#8, is the key openssl reads (and signs with)
    der = tmp_path / "key.der"
    der.write_bytes(key.pkcs8_der())
    r = openssl("pkey", "-inform", "DER", "-in", str(der), "-pubout", "-outform", "DER")
    assert r.returncode == 0 and r.stdout == key.public_der()


@pytest.mark.parametrize("distid", ["1234567812345678", "ALICE123@YAHOO.COM"])
def test_openssl_signatures_verify_with_ours(tmp_path: Path, distid: str) -> None:
    key_pem, pub_pem = openssl_key(tmp_path)
    msg = tmp_path / "msg"
    msg.write_bytes(b'{"format":"jianzheng-seal/1","sample_code":"YP-1"}')
    sig = tmp_path / "sig.der"
    r = openssl("pkeyutl", "-sign", "-inkey", str(key_pem), "-in", str(msg), "-out", str(sig),
                "-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{distid}")
    assert r.returncode == 0, r.stderr
    public = pem_der(pub_pem)
    signature = sig.read_bytes()
    assert sm2.verify(public, msg.read_bytes(), signature, distid.encode())
    rs = sm2.raw_signature(signature)
    assert rs is not None
    raw = rs[0].to_bytes(32, "big") + rs[1].to_bytes(32, "big")
    assert sm2.verify(public, msg.read_bytes(), raw, distid.encode())  # raw r||s too
    assert sm2.verify(sm2.public_point(public), msg.read_bytes(), raw, distid.encode())
    assert not sm2.verify(public, msg.read_bytes() + b" ", signature, distid.encode())
    assert not sm2.verify(public, msg.read_bytes(), signature, b"another id")
    assert not sm2.verify(public, msg.read_bytes(), raw[:-1] + bytes([raw[-1] ^ 1]),
                          distid.encode())
    # openssl's private key file is one we read, and our signature with it verifies there
    ours = sm2.SM2PrivateKey.from_pkcs8(key_pem.read_bytes())
    assert ours.public_der() == public
    sig.write_bytes(ours.sign_der(msg.read_bytes(), distid.encode()))
    assert openssl_verify(pub_pem, msg, sig, distid)


def test_malformed_keys_and_signatures_are_refused_not_raised() -> None:
    key = sm2.SM2PrivateKey.generate()
    sig = key.sign_raw(b"m")
    assert sm2.verify(key.public_der(), b"m", sig)
    off_curve = key.point[:-1] + bytes([key.point[-1] ^ 1])
    for public in (b"", b"\x04" + b"\x00" * 64, off_curve, key.public_der()[:-1]):
        assert not sm2.verify(public, b"m", sig)
    for bad in (b"", sig[:63], b"\x30\x00", b"\x00" * 64, b"\xff" * 64):
        assert not sm2.verify(key.public_der(), b"m", bad)
    with pytest.raises(sm2.SM2KeyError):
        sm2.SM2PrivateKey.from_pkcs8(b"not a key")
    with pytest.raises(sm2.SM2KeyError):
        sm2.public_point(b"\x04" + b"\x01" * 64)


def test_witness_keys_may_be_sm2(tmp_path: Path) -> None:
    """Intake's parse and the verifier's re-check of an SM2 witness key and signature, made
    by openssl (PEM key as a lab registers it)."""
    key_pem, pub_pem = openssl_key(tmp_path)
    parsed = seals.parse_public_key(pub_pem.read_text(), "sm2")
    assert parsed.der == pem_der(pub_pem) and parsed.algorithm == "sm2"
    assert seals.parse_public_key(base64.b64encode(parsed.der).decode(), "sm2") == parsed
    with pytest.raises(Invalid) as err:
        seals.parse_public_key(base64.b64encode(b"\x04" + b"\x02" * 64).decode(), "sm2")
    assert err.value.code == "witness_key_invalid"
    p256 = tmp_path / "p256.pem"
    assert openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-out", str(p256)).returncode == 0
    r = openssl("pkey", "-in", str(p256), "-pubout")
    with pytest.raises(Invalid):
        seals.parse_public_key(r.stdout.decode(), "sm2")  # a P-256 key is not an SM2 key
    signed = seals.seal_payload("YP-1", "2026-11-22T10:00:00Z", "工地", ["ab" * 32])
    msg = tmp_path / "payload"
    msg.write_bytes(seals.signed_bytes(signed))
    sig = tmp_path / "sig.der"
    assert openssl("pkeyutl", "-sign", "-inkey", str(key_pem), "-in", str(msg), "-out",
                   str(sig), "-rawin", "-digest", "sm3", "-pkeyopt",
                   "distid:1234567812345678").returncode == 0
    assert seals.verify_signature("sm2", parsed.der, msg.read_bytes(), sig.read_bytes())
    body = {"signed": signed, "signature": base64.b64encode(sig.read_bytes()).decode(),
            "witness_key": {"algorithm": "sm2", "public_key": parsed.b64}}
    assert body_signature_problem(body) is None
    assert body_signature_problem({**body, "witness_key": {**body["witness_key"],
                                   "distinguishing_id": "ALICE"}}) is not None
    forged = {**body, "signed": {**signed, "sample_code": "YP-2"}}
    assert body_signature_problem(forged) == "the witness signature does not verify"
    as_p256 = {**body, "witness_key": {**body["witness_key"], "algorithm": "ecdsa-p256"}}
    assert body_signature_problem(as_p256) is not None
    with pytest.raises(Invalid) as err:  # an SM2 key registered as P-256: refused, not a 500
        seals.parse_public_key(pub_pem.read_text(), "ecdsa-p256")
    assert err.value.code == "witness_key_invalid"


def test_an_sm2_witness_key_with_its_own_distinguishing_id(app_state: ServiceState) -> None:
    """Through the API: a key registered with a distinguishing ID signs under it (intake and
    the record both say so); the default ID's signature by it is refused; only SM2 keys
    take one."""
    app = make_app(app_state)
    lab = client_for(app, add_lab(app_state, 1609))
    chain = build_chain(lab, sample_code="YP-SM2-ID", algorithm="sm2")
    signer = WitnessSigner.new("sm2")
    signer.distid = "ALICE123@YAHOO.COM"
    signer.register(lab, name="李四")
    own = replace(chain, witness_key=signer)
    record_id = created(lab.post("/api/v1/seals", json_body=seal_body(own)))
    with app_state.sessions() as s:
        rec = s.get(Record, record_id)
        assert rec is not None
        body = json.loads(rec.canonical)["body"]
    assert body["witness_key"]["distinguishing_id"] == "ALICE123@YAHOO.COM"
    assert body_signature_problem(body) is None  # the verifier re-checks under that ID
    assert "distinguishing_id" not in json.loads(
        _seal_record(app_state, chain, lab))["body"]["witness_key"]  # default: as before
    default_signed = replace(own, witness_key=replace(signer, distid=None))
    r = lab.post("/api/v1/seals", json_body={
        **seal_body(default_signed), "witness_key_id": signer.key_id})
    assert r.status_code == 422 and r.json()["code"] == "seal_signature_invalid", r.text
    ed = WitnessSigner.new("ed25519")
    r = lab.post("/api/v1/witness-keys", json_body={
        "witness": {"name": "王五", "id_number": VALID_ID_NUMBER, "unit": "鹏城监理"},
        "algorithm": "ed25519", "public_key": ed.public_pem(), "distinguishing_id": "X"})
    assert r.status_code == 422 and r.json()["code"] == "witness_key_invalid", r.text


def _seal_record(state: ServiceState, chain: Chain, lab: JianzhengClient) -> bytes:
    record_id = created(lab.post("/api/v1/seals", json_body=seal_body(chain)))
    with state.sessions() as s:
        rec = s.get(Record, record_id)
        assert rec is not None
        return rec.canonical
