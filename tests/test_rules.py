"""Pure rules: the working-day calendar, late-upload flags, seal signatures, backoff."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from service.api.problems import status_of
from service.domain import masking, rules, seals
from service.domain.notify import backoff_s
from service.domain.records import parse_rfc3339, witness_key_json
from service.errors import JianzhengError
from service.settings import NotifySettings, RulesSettings
from service.storage.models import WitnessKey
from tests.recordkit import VALID_ID_NUMBER, WitnessSigner

# 2026-10-01..07 National Day holidays, 2026-10-10 (a Saturday) a make-up working day
# in this test calendar (the real one is configured per year).
CAL = rules.WorkingCalendar(
    holidays=frozenset(date(2026, 10, d) for d in range(1, 8)),
    extra_workdays=frozenset({date(2026, 10, 10)}),
)
RULES = RulesSettings(
    holidays=tuple(CAL.holidays), extra_workdays=tuple(CAL.extra_workdays)
)


def cst(y: int, m: int, d: int, h: int = 10) -> datetime:
    """A China Standard Time wall-clock moment, as UTC."""
    return datetime(y, m, d, h, tzinfo=UTC) - timedelta(hours=8)


def test_working_days_skip_weekends_and_holidays() -> None:
    # Fri 2026-11-20 -> Mon 23 is 1 working day; -> Fri 27 is 5
    assert CAL.working_days_after(date(2026, 11, 20), date(2026, 11, 23)) == 1
    assert CAL.working_days_after(date(2026, 11, 20), date(2026, 11, 27)) == 5
    assert CAL.working_days_after(date(2026, 11, 20), date(2026, 11, 20)) == 0
    assert CAL.working_days_after(date(2026, 11, 20), date(2026, 11, 1)) == 0
    # Wed 30 Sep -> Thu 8 Oct: 1-7 are holidays, so only the 8th counts
    assert CAL.working_days_after(date(2026, 9, 30), date(2026, 10, 8)) == 1
    # the make-up Saturday counts, an ordinary Saturday does not
    assert CAL.is_working_day(date(2026, 10, 10))
    assert not CAL.is_working_day(date(2026, 10, 17))
    assert CAL.add_working_days(date(2026, 9, 30), 5) == date(2026, 10, 13)


def test_contract_late_after_five_working_days() -> None:
    signed = date(2026, 11, 20)  # a Friday
    assert rules.contract_flags(signed, cst(2026, 11, 27, 23), RULES, CAL) == []
    flags = rules.contract_flags(signed, cst(2026, 11, 30, 9), RULES, CAL)
    assert [f.rule for f in flags] == ["contract_late"]
    assert flags[0].detail["working_days"] == 6
    assert flags[0].detail["due_by"] == "2026-11-27"
    # the local (China) date counts: Mon 30 Nov 01:00 CST is still Sunday in UTC
    assert rules.contract_flags(signed, cst(2026, 11, 30, 1), RULES, CAL) != []
    utc_rules = RULES.model_copy(update={"timezone": "UTC"})
    assert rules.contract_flags(signed, cst(2026, 11, 30, 1), utc_rules, CAL) == []
    # over the National Day week
    assert rules.contract_flags(date(2026, 9, 30), cst(2026, 10, 13), RULES, CAL) == []
    assert rules.contract_flags(date(2026, 9, 30), cst(2026, 10, 14), RULES, CAL) != []


def test_test_data_late_depends_on_acquisition() -> None:
    finished = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    on_time = finished + timedelta(seconds=RULES.auto_data_max_delay_s)
    assert rules.test_data_flags("auto", finished, on_time, RULES) == []
    late = rules.test_data_flags("auto", finished, on_time + timedelta(seconds=1), RULES)
    assert late[0].as_json() == {
        "rule": "test_data_late",
        "acquisition": "auto",
        "finished_at": "2026-11-22T08:00:00Z",
        "received_at": "2026-11-22T08:10:01Z",
        "delay_s": 601,
        "limit_s": 600,
    }
    # manual entry has 24 h
    assert rules.test_data_flags("manual", finished, finished + timedelta(hours=23), RULES) == []
    assert rules.test_data_flags("manual", finished, finished + timedelta(hours=25), RULES)


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_seal_signature_round_trip(algorithm: str) -> None:
    signer = WitnessSigner.new(algorithm)
    key = seals.parse_public_key(signer.public_pem(), algorithm)
    assert key == seals.parse_public_key(signer.public_b64(), algorithm)
    payload = seals.seal_payload("YP-1", "2026-11-22T09:41:00+08:00", "工地", ["ab" * 32])
    sig = seals.decode_signature(signer.sign(payload))
    assert sig is not None
    msg = seals.signed_bytes(payload)
    assert seals.verify_signature(algorithm, key.der, msg, sig)
    assert not seals.verify_signature(algorithm, key.der, msg + b" ", sig)
    assert not seals.verify_signature(algorithm, key.der, msg, sig[:-1] + bytes([sig[-1] ^ 1]))
    other = "ecdsa-p256" if algorithm == "ed25519" else "ed25519"
    assert not seals.verify_signature(other, key.der, msg, sig)
    if algorithm == "ecdsa-p256":  # raw r||s is accepted too
        r, s = decode_dss_signature(sig)
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert seals.verify_signature(algorithm, key.der, msg, raw)


def test_public_key_must_match_algorithm() -> None:
    ed = WitnessSigner.new("ed25519")
    with pytest.raises(JianzhengError) as err:
        seals.parse_public_key(ed.public_b64(), "ecdsa-p256")
    assert err.value.code == "witness_key_invalid"
    for junk in ["not a key", base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), "-----BEGIN x"]:
        with pytest.raises(JianzhengError) as err:
            seals.parse_public_key(junk, "ed25519")
        assert status_of(err.value) == 422


def test_stored_seal_check_names_each_failure() -> None:
    signer = WitnessSigner.new()
    payload = seals.seal_payload("YP-1", "2026-11-22T09:41:00+08:00", "工地", ["ab" * 32])
    record = {
        "body": {
            "signed": payload,
            "signature": signer.sign(payload),
            "witness_key": {"algorithm": "ed25519", "public_key": signer.public_b64()},
        }
    }
    ok = seals.check_stored_seal(
        record, canonical_matches_leaf=True, observed_sample_code="YP-1", seal_intact=True
    )
    assert ok.passed and ok.as_json()["failed"] == []
    bad = seals.check_stored_seal(
        {"body": {**record["body"], "signature": "AAAA"}},
        canonical_matches_leaf=True,
        observed_sample_code="YP-2",
        seal_intact=True,
    )
    assert bad.as_json()["failed"] == ["signature_valid", "sample_code_matches"]
    assert not seals.check_stored_seal(
        {"body": "junk"}, canonical_matches_leaf=True, observed_sample_code="YP-1",
        seal_intact=True,
    ).passed


def test_rfc3339_and_masking() -> None:
    assert parse_rfc3339("2026-11-22T09:41:00.123456789+08:00").microsecond == 123456
    for bad in ["2026-11-22 09:41:00", "2026-11-22T09:41:00", "yesterday"]:
        with pytest.raises(ValueError):
            parse_rfc3339(bad)
    # First 3 and last 4 kept (the rule of the public pages, R19).
    assert masking.mask_id_number("11010519491231002X") == "110***********002X"
    assert masking.mask_id_number("110105491231002") == "110********1002"


@pytest.mark.parametrize("id_number", [VALID_ID_NUMBER, "440305199003071234", "110105491231002"])
def test_witness_key_answer_masks_ids_like_the_public_pages(id_number: str) -> None:
    """The lab-facing witness-key answer and the public pages mask an ID number alike.

    The two used to have different rules (110105********002X vs 110***********002X);
    this fails if records.py grows its own rule again.
    """
    signer = WitnessSigner.new()
    key = WitnessKey(
        key_id="01JTESTKEY0000000000000000", institution="91440300MA5XXXXX1X",
        algorithm="ed25519", public_key=base64.b64decode(signer.public_b64()),
        fingerprint="0" * 64, witness_name="张三", witness_id_number=id_number,
        witness_unit=None, created_at=datetime(2026, 11, 22, tzinfo=UTC), revoked_at=None,
    )
    answered = witness_key_json(key)["witness"]["id_number"]
    public = masking.mask_value("id_number", id_number)
    in_text = masking.mask_text(f"见证人身份证 {id_number} 。")
    assert answered == public
    assert in_text == f"见证人身份证 {public} 。"
    assert answered != id_number and answered[:3] == id_number[:3]
    assert answered[-4:] == id_number[-4:] and set(answered[3:-4]) == {"*"}
    assert witness_key_json(key, mask=False)["witness"]["id_number"] == id_number


def test_backoff_doubles_and_caps() -> None:
    s = NotifySettings(retry_initial_s=2, retry_max_s=60)
    assert [backoff_s(n, s) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_published_witness_signature_vectors() -> None:
    """tests/vectors/witness_signatures.json, quoted in docs/records.md, holds."""
    import json
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import ed25519

    vec = json.loads((Path(__file__).parent / "vectors" / "witness_signatures.json").read_text())
    private = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(vec["private_key_seed_hex"])
    )
    key = seals.parse_public_key(vec["public_key_spki_b64"], "ed25519")
    s, w = vec["seal"], vec["witness"]
    p = s["payload"]
    seal = seals.seal_payload(p["sample_code"], p["sealed_at"], p["place"], p["images"])
    p = w["payload"]
    witness = seals.witness_payload(
        p["sample_codes"], p["witnessed_at"], p["location"], p["activities"], p["images"]
    )
    for payload, case in ((seal, s), (witness, w)):
        assert payload == case["payload"]
        message = seals.signed_bytes(payload)
        assert message == case["signed_bytes_utf8"].encode("utf-8")
        assert base64.b64encode(private.sign(message)).decode() == case["signature_b64"]
        sig = seals.decode_signature(case["signature_b64"])
        assert sig is not None and seals.verify_signature("ed25519", key.der, message, sig)
