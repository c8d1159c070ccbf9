"""The signed QR payload and trust list (INTERFACE §7.5): our signer, our verifier, and
pycose from PyPI as the independent COSE implementation."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import cbor2
import pytest
import segno

from signer.ca import DevCA
from signer.errors import CaError
from signer.qrkeys import (
    MAX_ALNUM_CHARS_V15_Q,
    MAX_BYTES_V15_Q,
    ROTATION_GRACE_S,
    QrKeyStore,
    signed_qr_url,
)
from tests.qr_kit import cose_of, pycose_verify, trust_key_cert
from verifier.errors import InvalidQr, InvalidTrustList
from verifier.qr import (
    QrFacts,
    check_trust_list,
    decode_payload,
    kid_of_certificate,
    parse_trust_list,
    payload_text,
    verify_qr_text,
)

CODE = "44030026K7QZ3M9XB2T"
BASE = "https://jz.example.cn"


def facts(sealed_at: int, **changes: object) -> QrFacts:
    base: dict[str, object] = dict(
        code=CODE,
        report_no="SZJC-2026-000123",
        institution="91440300MA5EXXXXXX",
        conclusion="pass",
        issued_on="2026-11-22",
        original_sha256=hashlib.sha256(b"report").hexdigest(),
        sealed_at=sealed_at,
    )
    base.update(changes)
    return QrFacts(**base)  # type: ignore[arg-type]


@pytest.fixture()
def store(tmp_path: Path) -> QrKeyStore:
    return QrKeyStore(DevCA(tmp_path / "ca"))


def _now(store: QrKeyStore) -> int:
    return store.active().not_before + 10


def test_payload_verifies_with_pycose_and_carries_the_facts(store: QrKeyStore) -> None:
    when = _now(store)
    cose, kid = store.sign(facts(when))
    url = signed_qr_url(BASE, CODE, cose)
    assert url is not None and url.startswith("HTTPS://JZ.EXAMPLE.CN/V/" + CODE + "/JZ1")
    trust = json.loads(store.trust_list_bytes())
    cert = trust_key_cert(trust, kid.hex())
    assert kid == hashlib.sha256(cert).digest()[:8]
    payload = pycose_verify(cose_of(url), cert)
    assert payload == {
        1: CODE, 2: "SZJC-2026-000123", 3: "91440300MA5EXXXXXX", 4: 0, 5: "2026-11-22",
        6: hashlib.sha256(b"report").digest(), 7: when,
    }
    # the protected header is exactly {1: -7, 4: kid}, the message tag 18
    tagged = cbor2.loads(cose)
    assert tagged.tag == 18 and cbor2.loads(tagged.value[0]) == {1: -7, 4: kid}
    assert tagged.value[1] == {} and len(tagged.value[3]) == 64
    result = verify_qr_text(url, parse_trust_list(store.trust_list_bytes()))
    assert result.bottom_line, result.checks
    assert result.facts.as_json()["sealed_at"] == when


def test_a_changed_fact_fails_ours_and_pycose(store: QrKeyStore) -> None:
    when = _now(store)
    cose, kid = store.sign(facts(when))
    tagged = cbor2.loads(cose)
    payload = cbor2.loads(tagged.value[2])
    payload[4] = 1  # pass -> fail
    tagged.value[2] = cbor2.dumps(payload, canonical=True)
    forged = cbor2.dumps(tagged, canonical=True)
    trust = parse_trust_list(store.trust_list_bytes())
    result = verify_qr_text(f"{BASE}/v/{CODE}/{payload_text(forged)}", trust)
    assert not result.bottom_line
    assert [c.name for c in result.checks if not c.ok] == ["qr_signature"]
    with pytest.raises(AssertionError, match="pycose"):
        pycose_verify(forged, trust_key_cert(json.loads(store.trust_list_bytes()), kid.hex()))


def test_url_code_must_be_the_signed_code(store: QrKeyStore) -> None:
    cose, _ = store.sign(facts(_now(store)))
    other = "44030026AAAAAAAAAA0"
    result = verify_qr_text(f"{BASE}/V/{other}/{payload_text(cose)}",
                            parse_trust_list(store.trust_list_bytes()))
    assert [c.name for c in result.checks if not c.ok] == ["qr_url"]


def test_trust_list_is_signed_by_the_root(store: QrKeyStore, tmp_path: Path) -> None:
    data = store.trust_list_bytes()
    doc = json.loads(data)
    assert doc["format"] == "jianzheng-trust/1" and isinstance(doc["issued_at"], int)
    (key,) = doc["keys"]
    assert set(key) == {"kid", "alg", "certificate", "not_before", "not_after"}
    assert key["kid"] == kid_of_certificate(base64.b64decode(key["certificate"])).hex()
    root = store.ca.root_certificate.public_bytes(__import__(
        "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)
    assert check_trust_list(parse_trust_list(data), [root]).ok
    # another CA's root does not vouch for it
    other = DevCA(tmp_path / "other").root_certificate.public_bytes(__import__(
        "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)
    assert not check_trust_list(parse_trust_list(data), [other]).ok
    # one changed window breaks the signature
    doc["keys"][0]["not_after"] += 1
    tampered = json.dumps(doc).encode()
    check = check_trust_list(parse_trust_list(tampered), [root])
    assert not check.ok and "does not verify" in check.detail


def test_rotation_keeps_old_payloads_valid_removal_does_not(store: QrKeyStore) -> None:
    t0 = _now(store)
    old_cose, old_kid = store.sign(facts(t0))
    new_kid = store.rotate(now=t0 + 100)
    assert new_kid != old_kid.hex()
    trust = parse_trust_list(store.trust_list_bytes())
    old_key = trust.key(old_kid.hex())
    assert old_key is not None and old_key.not_after == t0 + 100 + ROTATION_GRACE_S
    assert [k.kid for k in trust.keys] == [old_kid.hex(), new_kid]
    assert verify_qr_text(payload_text(old_cose), trust).bottom_line
    new_cose, kid = store.sign(facts(t0 + 200))
    assert kid.hex() == new_kid
    assert verify_qr_text(payload_text(new_cose), trust).bottom_line
    # a payload claiming a sealing time after the old key's window fails the window check
    late = old_key.not_after + 1
    from signer.qrkeys import QrSigningKey  # the old key, used past its window
    from verifier.qr import ALG_ES256, protected_header

    old_private = store.ca.load_private_key_pem(
        (store.directory / "keys" / f"{old_kid.hex()}.key.pem").read_bytes()
    )
    stale = QrSigningKey(old_kid, old_private, old_key.certificate, 0, 2**40,
                         protected_header(ALG_ES256, old_kid)).sign(facts(late))
    result = verify_qr_text(payload_text(stale), trust)
    assert [c.name for c in result.checks if not c.ok] == ["qr_window"]
    # removing the old key: what it signed no longer verifies
    with pytest.raises(CaError):
        store.remove(new_kid)
    store.remove(old_kid.hex())
    after = parse_trust_list(store.trust_list_bytes())
    result = verify_qr_text(payload_text(old_cose), after)
    assert [c.name for c in result.checks if not c.ok] == ["qr_key"]
    assert verify_qr_text(payload_text(new_cose), after).bottom_line


def test_a_second_store_sees_the_rotation(store: QrKeyStore) -> None:
    """Another process (a second store on the same directory) signs with the new key."""
    other = QrKeyStore(store.ca)
    first = other.active().kid
    new_kid = store.rotate()
    assert other.active().kid.hex() == new_kid != first.hex()


@pytest.mark.parametrize(
    "text",
    [
        "", "hello", "https://jz.example.cn/v/44030026K7QZ3M9XB2T",  # unsigned, version 1
        "JZ1", "JZ1!!!!", "JZ1AAAAAAAA", f"{BASE}/v/{CODE}/JZ1MFRGG", "ftp://x/v/ABCD/JZ1AA",
        "JZ1" + base64.b32encode(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""]))).decode(),
        "JZ1" + base64.b32encode(b"\xd2" + b"\x00" * 10).decode().rstrip("="),
    ],
)
def test_garbage_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidQr):
        decode_payload(text)


def test_trust_list_garbage() -> None:
    for data in (b"", b"{}", b"[]", b'{"format": "jianzheng-trust/1"}', b"\xff"):
        with pytest.raises(InvalidTrustList):
            parse_trust_list(data)


def test_capacity_constants_match_segno() -> None:
    """The URL limits are exactly what a version-15 QR at level Q holds."""
    alnum = "A" * MAX_ALNUM_CHARS_V15_Q
    assert segno.make_qr(alnum, error="q", boost_error=False).version == 15
    assert segno.make_qr(alnum + "A", error="q", boost_error=False).version == 16
    raw = "a" * MAX_BYTES_V15_Q
    assert segno.make_qr(raw, error="q", boost_error=False).version == 15
    assert segno.make_qr(raw + "a", error="q", boost_error=False).version == 16


def test_url_forms(store: QrKeyStore) -> None:
    cose, _ = store.sign(facts(_now(store)))
    assert signed_qr_url("http://127.0.0.1:8000/", CODE, cose).startswith(  # type: ignore[union-attr]
        "HTTP://127.0.0.1:8000/V/")
    # an upper-case path is kept; a lower-case one cannot be upper-cased, and in byte mode
    # the payload does not fit a version-15 QR (the report then gets the plain QR)
    url = signed_qr_url("https://gov.example.cn/JZ", CODE, cose)
    assert url is not None and url.startswith("HTTPS://GOV.EXAMPLE.CN/JZ/V/" + CODE + "/JZ1")
    assert signed_qr_url("https://gov.example.cn/jz", CODE, cose) is None
    # too long for a version-15 QR: no signed URL
    assert signed_qr_url("https://" + "A" * 200 + ".CN", CODE, cose) is None
    for u in (signed_qr_url(BASE, CODE, cose), signed_qr_url("http://127.0.0.1:8000", CODE, cose)):
        qr = segno.make_qr(u, error="q", boost_error=False)
        assert qr.version <= 15 and qr.mode == "alphanumeric"


def test_the_first_key_signs_a_payload_stamped_just_before_it_existed(tmp_path: Path) -> None:
    """The sealing step stamps `sealed_at` before the first key is made on demand; the
    second may tick in between (a race CI met): the first key's window covers it."""
    import time

    fresh = QrKeyStore(DevCA(tmp_path / "ca"))
    stamped = int(time.time()) - 1  # as if the second ticked before the key was created
    cose, kid = fresh.sign(facts(stamped))
    assert kid == fresh.active().kid and cose
    assert fresh.active().not_before <= stamped
