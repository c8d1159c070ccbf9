"""A QR payload signed with SM2 (INTERFACE §7.5, §7.7: alg -70001, r‖s, SM3 with the default
distinguishing ID), its key in a root-signed trust list as `"alg": "SM2"`, checked by the
verifier library and by `jianzheng-verify qr` with no network; the certificate and the COSE
signature checked by `openssl`, a tool we did not write."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from service.cli import main as jianzheng
from signer.ca import DevCA
from signer.errors import CaError
from signer.qrkeys import QrKeyStore
from signer.sm2qr import issue_sm2_certificate, sign_sm2
from tests.qr_kit import cose_of, run_offline
from verifier import sm2
from verifier.qr import (
    QrFacts,
    certificate_spki,
    check_trust_list,
    check_trust_list_sm2,
    decode_payload,
    kid_of_certificate,
    parse_trust_list,
    payload_text,
    root_fingerprint,
    trust_list_signed_bytes,
    verify_qr_text,
)

CODE = "44030026K7QZ3M9XB2T"
BASE = "https://jz.example.cn"
OPENSSL = shutil.which("openssl")


def _facts(sealed_at: int, **changes: object) -> QrFacts:
    base: dict[str, object] = dict(
        code=CODE, report_no="SZJC-2026-000123", institution="91440300MA5EXXXXXX",
        conclusion="pass", issued_on="2026-11-22", original_sha256="ab" * 32,
        sealed_at=sealed_at,
    )
    base.update(changes)
    return QrFacts(**base)  # type: ignore[arg-type]


def _trust_list(ca: DevCA, entries: list[dict[str, Any]], now: int) -> bytes:
    """A trust list signed by the root the way signer/qrkeys.py signs it."""
    root_der = ca.root_certificate.public_bytes(serialization.Encoding.DER)
    doc: dict[str, Any] = {"format": "jianzheng-trust/1", "issued_at": now, "keys": entries}
    r, s = decode_dss_signature(ca.root_sign(trust_list_signed_bytes(doc)))
    doc["signature"] = {"alg": "ES256", "root_id": root_fingerprint(root_der),
                        "value": base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
                        .decode()}
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("sm2qr")
    ca = DevCA(tmp / "ca")
    key = sm2.SM2PrivateKey.generate()
    cert = issue_sm2_certificate(ca, key.point, "test")
    kid = kid_of_certificate(cert)
    now = 1_790_000_000
    entry = {"kid": kid.hex(), "alg": "SM2", "certificate": base64.b64encode(cert).decode(),
             "not_before": now - 3600, "not_after": now + 3600}
    trust = tmp / "trust.json"
    trust.write_bytes(_trust_list(ca, [entry], now))
    cose = sign_sm2(_facts(now), key, kid)
    return {"ca": ca, "key": key, "cert": cert, "kid": kid, "entry": entry, "now": now,
            "trust": trust, "url": f"{BASE}/v/{CODE}/{payload_text(cose)}", "tmp": tmp}


def test_an_sm2_payload_verifies_against_the_trust_list(kit: dict[str, Any]) -> None:
    trust = parse_trust_list(kit["trust"].read_bytes())
    roots = [kit["ca"].root_certificate.public_bytes(serialization.Encoding.DER)]
    assert check_trust_list(trust, roots).ok
    signed = decode_payload(kit["url"])
    assert signed.alg == -70001 and len(signed.signature) == 64
    result = verify_qr_text(kit["url"], trust)
    assert result.bottom_line, result.checks
    assert [c.detail for c in result.checks if c.name == "qr_signature"] == [
        "SM2 signature verifies"]
    assert result.facts.code == CODE


def test_a_changed_or_foreign_sm2_payload_fails(kit: dict[str, Any]) -> None:
    trust = parse_trust_list(kit["trust"].read_bytes())
    changed = sign_sm2(_facts(kit["now"], conclusion="fail"), kit["key"], kit["kid"])
    signed = decode_payload(f"{BASE}/v/{CODE}/{payload_text(cose_of(kit['url']))}")
    # the signature of the genuine facts over the changed payload
    forged = payload_text(cose_of(payload_text(changed))[:-64] + signed.signature)
    result = verify_qr_text(forged, trust)
    assert not result.bottom_line
    assert [c.ok for c in result.checks if c.name == "qr_signature"] == [False]
    other = sign_sm2(_facts(kit["now"]), sm2.SM2PrivateKey.generate(), kit["kid"])
    assert not verify_qr_text(payload_text(other), trust).bottom_line
    # the list naming the key ES256: the alg does not match, nothing is verified as ES256
    relabelled = parse_trust_list(_trust_list(kit["ca"], [{**kit["entry"], "alg": "ES256"}],
                                              kit["now"]))
    checks = verify_qr_text(kit["url"], relabelled).checks
    assert [c.name for c in checks if not c.ok] == ["qr_key"]
    # outside the key's window
    late = sign_sm2(_facts(kit["now"] + 7200), kit["key"], kit["kid"])
    checks = verify_qr_text(payload_text(late), trust).checks
    assert [c.name for c in checks if not c.ok] == ["qr_window"]


def test_jianzheng_verify_qr_checks_sm2_offline(kit: dict[str, Any]) -> None:
    out = run_offline("qr", kit["url"], "--trust-list", str(kit["trust"]))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SM2" in out.stdout
    bad = sign_sm2(_facts(kit["now"]), sm2.SM2PrivateKey.generate(), kit["kid"])
    out = run_offline("qr", payload_text(bad), "--trust-list", str(kit["trust"]))
    assert out.returncode == 1, out.stdout + out.stderr


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
def test_openssl_reads_the_certificate_and_verifies_the_cose_signature(
    kit: dict[str, Any],
) -> None:
    tmp: Path = kit["tmp"]
    cert = tmp / "sm2.der"
    cert.write_bytes(kit["cert"])
    root = tmp / "root.pem"
    root.write_bytes(kit["ca"].roots_pem())
    pem = subprocess.run([OPENSSL, "x509", "-inform", "DER", "-in", str(cert)],
                         capture_output=True, check=True).stdout
    (tmp / "sm2.pem").write_bytes(pem)
    text = subprocess.run([OPENSSL, "x509", "-in", str(tmp / "sm2.pem"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "SM2" in text or "sm2" in text
    r = subprocess.run([OPENSSL, "verify", "-CAfile", str(root), str(tmp / "sm2.pem")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr  # the root's ES256 signature over our TBS
    # the COSE signature: SM2-with-SM3 over the Sig_structure, as openssl computes it
    signed = decode_payload(kit["url"])
    spki = certificate_spki(kit["cert"])
    assert spki is not None
    pub = tmp / "pub.pem"
    pub.write_text(sm2.spki_pem(sm2.public_point(spki)))
    tbs = tmp / "tbs"
    tbs.write_bytes(signed.to_be_signed())
    sig = tmp / "sig.der"
    sig.write_bytes(sm2.der_signature(int.from_bytes(signed.signature[:32], "big"),
                                      int.from_bytes(signed.signature[32:], "big")))
    r = subprocess.run([OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-in",
                        str(tbs), "-sigfile", str(sig), "-rawin", "-digest", "sm3", "-pkeyopt",
                        "distid:1234567812345678"], capture_output=True, text=True)
    assert r.returncode == 0 and "Verified Successfully" in r.stdout, r.stdout + r.stderr


def test_the_key_store_rotates_to_sm2_and_back(tmp_path: Path) -> None:
    ca = DevCA(tmp_path / "ca")
    store = QrKeyStore(ca)
    now = store.active().not_before + 10
    es256 = store.sign(_facts(now))[0]
    sm2_kid = store.rotate(algorithm="SM2", grace_s=0, now=now)
    cose, kid = store.sign(_facts(now))
    assert kid.hex() == sm2_kid and decode_payload(payload_text(cose)).alg == -70001
    trust = parse_trust_list(store.trust_list_bytes())
    assert [k.alg for k in trust.keys] == ["ES256", "SM2"]
    roots = [ca.root_certificate.public_bytes(serialization.Encoding.DER)]
    assert check_trust_list(trust, roots).ok
    assert verify_qr_text(payload_text(cose), trust).bottom_line
    assert verify_qr_text(payload_text(es256), trust).bottom_line  # the old key's payload
    key_file = tmp_path / "ca" / "qr" / "keys" / f"{sm2_kid}.sm2.key"
    active = store.active().private_key
    assert isinstance(active, sm2.SM2PrivateKey)
    assert key_file.exists() and active.scalar not in key_file.read_bytes()  # sealed
    # another process (a second store) signs with the SM2 key too
    again = QrKeyStore(DevCA(tmp_path / "ca"))
    assert again.active().kid.hex() == sm2_kid
    assert verify_qr_text(payload_text(again.sign(_facts(now))[0]), trust).bottom_line
    # a wrong passphrase cannot open it
    with pytest.raises(CaError):
        QrKeyStore(DevCA(tmp_path / "ca", passphrase=b"wrong")).active()
    # back to ES256; the SM2 key can then be removed (what it signed no longer verifies)
    store.rotate(grace_s=0, now=now)
    store.remove(sm2_kid, now=now)
    assert not key_file.exists()
    assert not verify_qr_text(payload_text(cose), parse_trust_list(store.trust_list_bytes())
                              ).bottom_line


def test_the_command_line_rotates_to_sm2(cli_data_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert jianzheng(["ca", "qr-keys", "rotate", "--algorithm", "sm2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [k["alg"] for k in out["keys"]][-1] == "SM2"
    assert out["signing_kid"] == out["keys"][-1]["kid"]
    assert jianzheng(["ca", "trust-list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["keys"][-1]["alg"] == "SM2"


def test_a_deployment_with_sm2_keys_co_signs_its_trust_list(tmp_path: Path) -> None:
    ca = DevCA(tmp_path / "ca")
    store = QrKeyStore(ca)
    assert "signature_sm2" not in store.document()  # an ES256-only list is as before
    store.rotate(algorithm="SM2")
    doc = store.document()
    co = doc["signature_sm2"]
    assert co["alg"] == "SM2"
    roots = [ca.root_certificate.public_bytes(serialization.Encoding.DER)]
    check = check_trust_list(parse_trust_list(store.trust_list_bytes()), roots)
    assert check.ok and "co-signed with SM2" in check.detail, check
    sm2_check = check_trust_list_sm2(doc, roots)
    assert sm2_check is not None and sm2_check.ok
    # a changed SM2 value, or a certificate another CA issued, fails the list
    value = bytearray(base64.b64decode(co["value"]))
    value[-1] ^= 1
    bad = {**doc, "signature_sm2": {**co, "value": base64.b64encode(bytes(value)).decode()}}
    assert not check_trust_list(parse_trust_list(json.dumps(bad).encode()), roots).ok
    other = DevCA(tmp_path / "other")
    foreign_key = sm2.SM2PrivateKey.generate()
    foreign = {**doc, "signature_sm2": {
        "alg": "SM2",
        "certificate": base64.b64encode(issue_sm2_certificate(other, foreign_key.point, "x"))
        .decode(),
        "value": base64.b64encode(foreign_key.sign_raw(trust_list_signed_bytes(doc))).decode()}}
    result = check_trust_list_sm2(foreign, roots)
    assert result is not None and not result.ok and "not issued by a trusted root" in result.detail
    # jianzheng-verify qr --trust-roots checks both signatures
    (tmp_path / "trust.json").write_bytes(store.trust_list_bytes())
    (tmp_path / "roots.pem").write_bytes(ca.roots_pem())
    cose = store.sign(_facts(store.active().not_before + 1))[0]
    out = run_offline("qr", payload_text(cose), "--trust-list", str(tmp_path / "trust.json"),
                      "--trust-roots", str(tmp_path / "roots.pem"))
    assert out.returncode == 0, out.stdout + out.stderr
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    out = run_offline("qr", payload_text(cose), "--trust-list", str(tmp_path / "bad.json"),
                      "--trust-roots", str(tmp_path / "roots.pem"))
    assert out.returncode == 1, out.stdout + out.stderr
    if OPENSSL is not None:  # openssl checks the co-signature with the list certificate
        spki = certificate_spki(base64.b64decode(co["certificate"]))
        assert spki is not None
        (tmp_path / "pub.pem").write_text(sm2.spki_pem(sm2.public_point(spki)))
        (tmp_path / "tbs").write_bytes(trust_list_signed_bytes(doc))
        raw = base64.b64decode(co["value"])
        (tmp_path / "sig").write_bytes(sm2.der_signature(int.from_bytes(raw[:32], "big"),
                                                         int.from_bytes(raw[32:], "big")))
        r = subprocess.run([OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey",
                            str(tmp_path / "pub.pem"), "-in", str(tmp_path / "tbs"),
                            "-sigfile", str(tmp_path / "sig"), "-rawin", "-digest", "sm3",
                            "-pkeyopt", "distid:1234567812345678"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
