"""`jianzheng-verify qr` (§7.8) with the network unreachable, and key rotation from the
command line (`jianzheng ca qr-keys`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cbor2
import pytest
from PIL import Image

from service.cli import main as jianzheng
from signer.ca import DevCA
from signer.qrkeys import QrKeyStore, QrSigningKey, signed_qr_url
from signer.seal import seal_pdf
from signer.stamp import SIGNED_QR_LAYOUT, make_dev_seal_image, prepare_seal
from tests.fixtures.signer import INSTITUTION_NAME, INSTITUTION_USCC, make_report_pdf
from tests.qr_kit import ROOT, degraded_photo, run_offline
from verifier.qr import ALG_ES256, QrFacts, payload_text, protected_header

CODE = "44030026K7QZ3M9XB2T"
def _facts(sealed_at: int, **changes: object) -> QrFacts:
    base: dict[str, object] = dict(
        code=CODE, report_no="SZJC-2026-000123", institution=INSTITUTION_USCC,
        conclusion="pass", issued_on="2026-11-22", original_sha256="ab" * 32,
        sealed_at=sealed_at,
    )
    base.update(changes)
    return QrFacts(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("qrcli")
    ca = DevCA(tmp / "ca")
    store = QrKeyStore(ca)
    when = store.active().not_before + 5
    cose, kid = store.sign(_facts(when))
    url = signed_qr_url("https://jz.example.cn", CODE, cose)
    assert url is not None
    pdf = seal_pdf(make_report_pdf(2), CODE, url,
                   prepare_seal(INSTITUTION_NAME, make_dev_seal_image(INSTITUTION_NAME),
                                layout=SIGNED_QR_LAYOUT),
                   ca.seal_key_source(INSTITUTION_USCC, INSTITUTION_NAME), level="B-B").data
    photo = tmp / "photo.jpg"
    degraded_photo(pdf, 0).save(photo, format="JPEG", quality=60)
    (tmp / "trust.json").write_bytes(store.trust_list_bytes())
    (tmp / "roots.pem").write_bytes(ca.roots_pem())
    (tmp / "report.pdf").write_bytes(pdf)
    return {"tmp": tmp, "ca": ca, "store": store, "url": url, "cose": cose, "kid": kid,
            "when": when, "photo": photo}


def test_valid_photo_exits_0_and_prints_the_facts(kit: dict[str, object]) -> None:
    tmp = kit["tmp"]
    assert isinstance(tmp, Path)
    out = run_offline("qr", str(kit["photo"]), "--trust-list", str(tmp / "trust.json"),
                      "--trust-roots", str(tmp / "roots.pem"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS  trust_list" in out.stdout and "PASS  qr_signature" in out.stdout
    assert "SZJC-2026-000123" in out.stdout and CODE in out.stdout and "RESULT  VALID" in out.stdout
    # the same from the PDF, from the URL text, from a text file, and as JSON
    for source in (str(tmp / "report.pdf"), str(kit["url"])):
        r = run_offline("qr", source, "--trust-list", str(tmp / "trust.json"), "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        assert doc["result"] == "valid" and doc["facts"]["sealed_at"] == kit["when"]
    (tmp / "qr.txt").write_text(str(kit["url"]) + "\n")
    assert run_offline("qr", str(tmp / "qr.txt"), "--trust-list",
                       str(tmp / "trust.json")).returncode == 0


def test_a_changed_fact_exits_1(kit: dict[str, object]) -> None:
    tmp = kit["tmp"]
    assert isinstance(tmp, Path) and isinstance(kit["cose"], bytes)
    tagged = cbor2.loads(kit["cose"])
    payload = cbor2.loads(tagged.value[2])
    payload[2] = "SZJC-2026-000124"
    tagged.value[2] = cbor2.dumps(payload, canonical=True)
    forged = f"https://jz.example.cn/v/{CODE}/{payload_text(cbor2.dumps(tagged, canonical=True))}"
    out = run_offline("qr", forged, "--trust-list", str(tmp / "trust.json"))
    assert out.returncode == 1, out.stdout
    assert "FAIL  qr_signature" in out.stdout and "RESULT  INVALID" in out.stdout


def test_a_key_outside_its_window_or_not_listed_exits_1(kit: dict[str, object]) -> None:
    tmp, store, kid = kit["tmp"], kit["store"], kit["kid"]
    assert isinstance(tmp, Path) and isinstance(store, QrKeyStore) and isinstance(kid, bytes)
    active = store.active()
    late = QrSigningKey(kid, active.private_key, active.certificate_der, 0, 2**40,
                        protected_header(ALG_ES256, kid)).sign(_facts(active.not_after + 10))
    out = run_offline("qr", payload_text(late), "--trust-list", str(tmp / "trust.json"))
    assert out.returncode == 1 and "FAIL  qr_window" in out.stdout
    # a key the list does not name
    other = QrKeyStore(DevCA(tmp / "other-ca"))
    cose, _ = other.sign(_facts(other.active().not_before + 1))
    out = run_offline("qr", payload_text(cose), "--trust-list", str(tmp / "trust.json"))
    assert out.returncode == 1 and "FAIL  qr_key" in out.stdout
    # a trust list not signed by the roots given
    (tmp / "other-roots.pem").write_bytes(other.ca.roots_pem())
    out = run_offline("qr", str(kit["url"]), "--trust-list", str(tmp / "trust.json"),
                      "--trust-roots", str(tmp / "other-roots.pem"))
    assert out.returncode == 1 and "FAIL  trust_list" in out.stdout


def test_garbage_exits_2(kit: dict[str, object]) -> None:
    tmp = kit["tmp"]
    assert isinstance(tmp, Path)
    blank = tmp / "blank.png"
    Image.new("L", (400, 300), 255).save(blank)
    (tmp / "noise.bin").write_bytes(bytes(range(256)) * 10)
    trust = str(tmp / "trust.json")
    for arg in ("garbage", "JZ1NOTBASE32!", f"https://jz.example.cn/v/{CODE}", str(blank),
                str(tmp / "noise.bin")):
        out = run_offline("qr", arg, "--trust-list", trust)
        assert out.returncode == 2, (arg, out.stdout, out.stderr)
        assert "UNUSABLE INPUT" in out.stdout
    (tmp / "bad-trust.json").write_text("{not json")
    assert run_offline("qr", str(kit["url"]), "--trust-list",
                       str(tmp / "bad-trust.json")).returncode == 2
    assert run_offline("qr", str(kit["url"]), "--trust-list",
                       str(tmp / "missing.json")).returncode == 2


def test_the_bundle_form_still_parses() -> None:
    """`jianzheng-verify PATH --rpc` is unchanged beside the qr subcommand."""
    out = run_offline(str(ROOT / "nonexistent.zip"), "--rpc", "http://127.0.0.1:9")
    assert out.returncode == 2 and "cannot read" in out.stdout


def test_rotation_from_the_cli(cli_data_dir: Path, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    """`jianzheng ca qr-keys rotate`: old payloads still verify offline with the new list;
    `remove` makes what the old key signed fail."""
    assert jianzheng(["ca", "qr-keys"]) == 0
    first = json.loads(capsys.readouterr().out)
    old_kid = first["signing_kid"]
    from service.domain.trust import platform_ca
    from service.settings import get_settings

    store = QrKeyStore(platform_ca(get_settings()))
    old_cose, _ = store.sign(_facts(int(time.time())))
    assert jianzheng(["ca", "qr-keys", "rotate", "--grace", "0"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["signing_kid"] != old_kid
    assert [k["kid"] for k in rotated["keys"]] == [old_kid, rotated["signing_kid"]]
    assert jianzheng(["ca", "trust-list"]) == 0
    (tmp_path / "trust.json").write_text(capsys.readouterr().out)
    assert jianzheng(["ca", "roots"]) == 0
    (tmp_path / "roots.pem").write_text(capsys.readouterr().out)
    trust = ["--trust-list", str(tmp_path / "trust.json"), "--trust-roots",
             str(tmp_path / "roots.pem")]
    assert run_offline("qr", payload_text(old_cose), *trust).returncode == 0
    new_cose, new_kid = store.sign(_facts(int(time.time())))
    assert new_kid.hex() == rotated["signing_kid"]
    assert run_offline("qr", payload_text(new_cose), *trust).returncode == 0
    # the signing key cannot be removed; the old one can
    assert jianzheng(["ca", "qr-keys", "remove", rotated["signing_kid"]]) == 1
    capsys.readouterr()
    assert jianzheng(["ca", "qr-keys", "remove", old_kid]) == 0
    capsys.readouterr()
    assert jianzheng(["ca", "trust-list"]) == 0
    (tmp_path / "trust.json").write_text(capsys.readouterr().out)
    out = run_offline("qr", payload_text(old_cose), *trust)
    assert out.returncode == 1 and "FAIL  qr_key" in out.stdout
    assert run_offline("qr", payload_text(new_cose), *trust).returncode == 0
