"""jianzheng-proof/1 parsing and the six proof checks, against in-memory chain data."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.proof_builder import (
    CHAIN_ID,
    OTHER_REGISTRY,
    REGISTRY,
    FakeChain,
    ancestry_records,
    anchored_log,
    build_proofs,
)
from verifier.chain import (
    ANCHOR_OF_SELECTOR,
    ANCHORED_TOPIC,
    BATCH_COUNT_SELECTOR,
    REVOCATION_OF_SELECTOR,
    decode_anchor_of,
    decode_revocation_of,
    report_subject,
)
from verifier.errors import ChainError, InvalidProof
from verifier.models import AnchorInfo, Check, Proof, ProofVerification, Receipt
from verifier.proof import (
    MAX_PROOF_BYTES,
    Pins,
    check_anchor,
    check_anchor_event,
    evaluate_proof,
    parse_proof,
    proof_to_dict,
    verify_proof,
)

PINNED = Pins(chain_id=CHAIN_ID, registry=REGISTRY)


@pytest.fixture
def batch() -> list[dict[str, Any]]:
    proofs, _ = build_proofs(ancestry_records())
    return proofs


@pytest.fixture
def chain(batch: list[dict[str, Any]]) -> FakeChain:
    fake = FakeChain()
    fake.anchor(batch[0])
    return fake


def failed(result: ProofVerification) -> dict[str, Check]:
    return {c.name: c for c in result.checks if not c.ok}


# --- parsing ----------------------------------------------------------------------------------


def test_parse_round_trip(batch: list[dict[str, Any]]) -> None:
    doc = batch[-1]
    text = json.dumps(doc, ensure_ascii=False)
    for source in (doc, text, text.encode("utf-8")):
        proof = parse_proof(source)
        assert isinstance(proof, Proof)
        assert proof_to_dict(proof) == doc
    proof = parse_proof(doc)
    assert proof.record_id == "01REPORT" and proof.record_type == "report"
    assert proof.batch.leaf_index == 5 and proof.batch.tree_size == 6


def test_unknown_members_are_ignored_and_addresses_normalized(
    batch: list[dict[str, Any]],
) -> None:
    doc = copy.deepcopy(batch[0])
    doc["extra"] = {"added": "later"}
    doc["anchor"]["registry"] = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # EIP-55
    doc["anchor"]["tx_hash"] = doc["anchor"]["tx_hash"].upper().replace("0X", "0x")
    proof = parse_proof(doc)
    assert proof.anchor.registry == REGISTRY
    assert proof.anchor.tx_hash == batch[0]["anchor"]["tx_hash"]


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    target = doc
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("format", "jianzheng-proof/2", "unknown_format"),
        ("format", _DELETE, "unknown_format"),
        ("record", [], "bad_field"),
        ("record", _DELETE, "bad_field"),
        ("record.body", {"n": float("nan")}, "bad_record"),
        ("record.body", {"n": 2**60}, "bad_record"),
        ("leaf_hash", "AB" * 32, "bad_field"),
        ("leaf_hash", "ab" * 31, "bad_field"),
        ("leaf_hash", "0x" + "ab" * 32, "bad_field"),
        ("leaf_hash", 5, "bad_field"),
        ("batch", "x", "bad_field"),
        ("batch.seq", 0, "bad_field"),
        ("batch.seq", -1, "bad_field"),
        ("batch.seq", 2**64, "bad_field"),
        ("batch.seq", True, "bad_field"),
        ("batch.seq", 1.0, "bad_field"),
        ("batch.seq", "1", "bad_field"),
        ("batch.tree_size", 0, "bad_field"),
        ("batch.leaf_index", -1, "bad_field"),
        ("batch.root", "zz" * 32, "bad_field"),
        ("batch.path", "ab" * 32, "bad_field"),
        ("batch.path", ["ab" * 32] * 65, "path_too_long"),
        ("batch.path", ["AB" * 32], "bad_field"),
        ("anchor", None, "bad_field"),
        ("anchor.chain_id", 0, "bad_field"),
        ("anchor.chain_id", _DELETE, "bad_field"),
        ("anchor.registry", "5fbdb2315678afecb367f032d93f642f64180aa3", "bad_field"),
        ("anchor.registry", "0x5fbdb2315678afecb367f032d93f642f64180a", "bad_field"),
        ("anchor.registry", "0x5FbDB2315678afecb367f032d93F642f64180aA3", "bad_field"),  # EIP-55
        ("anchor.tx_hash", "ab" * 32, "bad_field"),
        ("anchor.tx_hash", "0x" + "ab" * 31, "bad_field"),
        ("anchor.block_number", -5, "bad_field"),
        ("anchor.block_timestamp", 2**64, "bad_field"),
    ],
)
def test_parse_rejects(batch: list[dict[str, Any]], field: str, value: Any, code: str) -> None:
    doc = copy.deepcopy(batch[0])
    _set(doc, field, value)
    with pytest.raises(InvalidProof) as info:
        parse_proof(doc)
    assert info.value.code == code
    assert info.value.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b"[]", "bad_field"),
        (b"not json", "invalid_json"),
        (b'{"format":"jianzheng-proof/1","format":"x"}', "invalid_json"),
        (b'{"format":"jianzheng-proof/1"} trailing', "invalid_json"),
        (b'{"a":NaN}', "invalid_json"),
    ],
)
def test_parse_rejects_bad_json(text: bytes, code: str) -> None:
    with pytest.raises(InvalidProof) as info:
        parse_proof(text)
    assert info.value.code == code


def test_parse_rejects_oversized(batch: list[dict[str, Any]]) -> None:
    doc = copy.deepcopy(batch[0])
    doc["record"]["body"] = {"blob": "x" * MAX_PROOF_BYTES}
    with pytest.raises(InvalidProof) as info:
        parse_proof(json.dumps(doc).encode())
    assert info.value.code == "proof_too_large"
    with pytest.raises(InvalidProof) as info:
        parse_proof(doc)
    assert info.value.code == "proof_too_large"


# --- verification: all good -------------------------------------------------------------------


def test_every_proof_of_the_batch_verifies(batch: list[dict[str, Any]], chain: FakeChain) -> None:
    for doc in batch:
        result = verify_proof(parse_proof(doc), chain, PINNED)
        assert result.bottom_line, result.findings
        assert result.findings == ()
        assert [c.status for c in result.checks] == ["PASS"] * 6
        assert [c.name for c in result.checks] == [
            "record_hash", "inclusion", "anchor", "anchor_event", "chain_id", "registry",
        ]
        assert all(c.record_id == doc["record"]["id"] for c in result.checks)


def test_unpinned_trust_is_a_warning(batch: list[dict[str, Any]], chain: FakeChain) -> None:
    result = verify_proof(parse_proof(batch[2]), chain)
    assert result.bottom_line
    assert result.chain_id.status == "WARN" and "not pinned" in result.chain_id.detail
    assert result.registry.status == "WARN" and "not pinned" in result.registry.detail
    assert {(f.check, f.severity) for f in result.findings} == {
        ("chain_id", "warning"), ("registry", "warning"),
    }
    assert result.findings[0].record_id == "01COMMISSION"
    assert result.findings[0].record_type == "commission"


# --- verification: tampering --------------------------------------------------------------------


def test_changed_record_field_fails_record_hash(
    batch: list[dict[str, Any]], chain: FakeChain
) -> None:
    doc = copy.deepcopy(batch[-1])
    doc["record"]["body"]["conclusion"] = "fail"
    result = verify_proof(parse_proof(doc), chain, PINNED)
    assert not result.bottom_line
    assert set(failed(result)) == {"record_hash"}
    assert "the record was changed" in result.record_hash.detail
    assert result.findings[0].record_id == "01REPORT"
    assert result.findings[0].record_type == "report"


def test_recomputed_leaf_hash_fails_inclusion(
    batch: list[dict[str, Any]], chain: FakeChain
) -> None:
    from verifier.merkle import record_leaf_hash

    doc = copy.deepcopy(batch[-1])
    doc["record"]["body"]["conclusion"] = "fail"
    doc["leaf_hash"] = record_leaf_hash(doc["record"]).hex()
    assert set(failed(verify_proof(parse_proof(doc), chain, PINNED))) == {"inclusion"}


def test_changed_path_or_index_fails_inclusion(
    batch: list[dict[str, Any]], chain: FakeChain
) -> None:
    doc = copy.deepcopy(batch[1])
    doc["batch"]["path"][0] = "00" * 32
    assert set(failed(verify_proof(parse_proof(doc), chain, PINNED))) == {"inclusion"}
    doc = copy.deepcopy(batch[1])
    doc["batch"]["leaf_index"] = 0
    assert set(failed(verify_proof(parse_proof(doc), chain, PINNED))) == {"inclusion"}
    doc = copy.deepcopy(batch[1])
    doc["batch"]["leaf_index"] = 6
    result = verify_proof(parse_proof(doc), chain, PINNED)
    assert set(failed(result)) == {"inclusion"}
    assert "outside a tree" in result.inclusion.detail


def test_changed_tree_size_fails_anchor(batch: list[dict[str, Any]], chain: FakeChain) -> None:
    doc = copy.deepcopy(batch[0])
    doc["batch"]["tree_size"] = 7
    result = verify_proof(parse_proof(doc), chain, PINNED)
    assert {"anchor", "anchor_event"} <= set(failed(result))
    assert "leaf count: chain says 6, proof says 7" in result.anchor.detail


def test_root_never_anchored(batch: list[dict[str, Any]]) -> None:
    result = verify_proof(parse_proof(batch[0]), FakeChain(), PINNED)
    assert set(failed(result)) == {"anchor", "anchor_event"}
    assert "never anchored" in result.anchor.detail
    assert "not found" in result.anchor_event.detail


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch.seq", 2, "seq: chain says 1, proof says 2"),
        ("anchor.block_number", 43, "block number: chain says 42, proof says 43"),
        ("anchor.block_timestamp", 1, "block timestamp: chain says 1763805600, proof says 1"),
    ],
)
def test_wrong_anchor_claims(
    batch: list[dict[str, Any]], chain: FakeChain, field: str, value: int, message: str
) -> None:
    doc = copy.deepcopy(batch[0])
    _set(doc, field, value)
    result = verify_proof(parse_proof(doc), chain, PINNED)
    assert {"anchor", "anchor_event"} == set(failed(result))
    assert message in result.anchor.detail


def test_wrong_registry_pinned(batch: list[dict[str, Any]], chain: FakeChain) -> None:
    result = verify_proof(parse_proof(batch[0]), chain, Pins(CHAIN_ID, OTHER_REGISTRY))
    # The pinned registry is the one asked: it never anchored this root.
    assert set(failed(result)) == {"registry", "anchor", "anchor_event"}
    assert OTHER_REGISTRY in result.registry.detail


def test_proof_naming_another_registry(batch: list[dict[str, Any]], chain: FakeChain) -> None:
    doc = copy.deepcopy(batch[0])
    doc["anchor"]["registry"] = OTHER_REGISTRY
    result = verify_proof(parse_proof(doc), chain)  # unpinned: trusts the proof's registry
    assert set(failed(result)) == {"anchor", "anchor_event"}
    assert "emitted no Anchored event from registry " + OTHER_REGISTRY in (
        result.anchor_event.detail
    )


def test_chain_id_mismatches(batch: list[dict[str, Any]], chain: FakeChain) -> None:
    proof = parse_proof(batch[0])
    result = verify_proof(proof, chain, Pins(chain_id=1, registry=REGISTRY))
    assert set(failed(result)) == {"chain_id"}
    assert "pinned chain is 1" in result.chain_id.detail
    other_node = FakeChain(chain_id=5)
    other_node.anchor(batch[0])
    result = verify_proof(proof, other_node, PINNED)
    assert set(failed(result)) == {"chain_id"}
    assert "node is chain 5" in result.chain_id.detail


def test_chain_unreachable_is_a_failed_check(
    batch: list[dict[str, Any]], chain: FakeChain
) -> None:
    chain.down = True
    result = verify_proof(parse_proof(batch[0]), chain, PINNED)
    assert not result.bottom_line
    names = [c.name for c in result.checks if not c.ok]
    assert names == ["chain_unreachable"] * 3
    assert result.record_hash.ok and result.inclusion.ok and result.registry.ok


def test_bad_registry_answer_fails_the_check(batch: list[dict[str, Any]]) -> None:
    class NoContract(FakeChain):
        def anchor_of(self, registry: str, root: bytes) -> AnchorInfo | None:
            raise ChainError("anchorOf(bytes32) returned no data", code="bad_registry_response")

    chain = NoContract()
    chain.anchor(batch[0])
    result = verify_proof(parse_proof(batch[0]), chain, PINNED)
    assert set(failed(result)) == {"anchor"}
    assert "returned no data" in result.anchor.detail


# --- the receipt check (pure) -------------------------------------------------------------------


def _receipt(proof: Proof, **changes: Any) -> Receipt:
    b, a = proof.batch, proof.anchor
    log = anchored_log(changes.pop("address", REGISTRY), changes.pop("seq", b.seq),
                       changes.pop("root", b.root), changes.pop("leaf_count", b.tree_size),
                       changes.pop("timestamp", a.block_timestamp))
    fields: dict[str, Any] = {"tx_hash": a.tx_hash, "status": 1,
                              "block_number": a.block_number, "logs": (log,)}
    fields.update(changes)
    return Receipt(**fields)


def test_anchor_event_variants(batch: list[dict[str, Any]]) -> None:
    proof = parse_proof(batch[0])
    assert check_anchor_event(proof, _receipt(proof), REGISTRY).ok
    cases = {
        "reverted": _receipt(proof, status=0),
        "in block 41": _receipt(proof, block_number=41),
        "emitted no Anchored event": _receipt(proof, address=OTHER_REGISTRY),
        "anchored other roots": _receipt(proof, root=b"\x11" * 32),
        "Anchored event has seq 9": _receipt(proof, seq=9),
        "leafCount 5": _receipt(proof, leaf_count=5),
        "timestamp 7": _receipt(proof, timestamp=7),
        "emitted no Anchored": _receipt(proof, logs=()),
    }
    for message, receipt in cases.items():
        check = check_anchor_event(proof, receipt, REGISTRY)
        assert not check.ok and message in check.detail, (message, check.detail)
    assert not check_anchor_event(proof, None, REGISTRY).ok


def test_anchor_check_pure(batch: list[dict[str, Any]]) -> None:
    proof = parse_proof(batch[0])
    assert check_anchor(proof, AnchorInfo(1, 6, 1_763_805_600, 42), REGISTRY).ok
    assert not check_anchor(proof, AnchorInfo(1, 6, 1_763_805_600, 41), REGISTRY).ok
    assert not check_anchor(proof, None, REGISTRY).ok
    result = evaluate_proof(proof, PINNED, node_chain_id=CHAIN_ID,
                            anchor_info=AnchorInfo(1, 6, 1_763_805_600, 42),
                            receipt=_receipt(proof))
    assert result.bottom_line and result.findings == ()


# --- ABI encodings --------------------------------------------------------------------------


def test_selectors_and_topic() -> None:
    assert BATCH_COUNT_SELECTOR.hex() == "06f13056"
    assert ANCHORED_TOPIC.hex() == (
        "942174e2732ff1fd36a4c6d41e2619429e59eaee1aae298a81cb1ff59474762a"
    )
    artifact = Path(__file__).parents[1] / "contracts" / "EvidenceRegistry.json"
    if not artifact.exists():
        pytest.skip("contract artifact not built")
    from eth_hash.auto import keccak

    abi = json.loads(artifact.read_text())["abi"]
    sigs = {
        e["name"]: f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"
        for e in abi if e.get("type") in ("function", "event")
    }
    assert keccak(sigs["anchorOf"].encode())[:4] == ANCHOR_OF_SELECTOR
    assert keccak(sigs["revocationOf"].encode())[:4] == REVOCATION_OF_SELECTOR
    assert keccak(sigs["batchCount"].encode())[:4] == BATCH_COUNT_SELECTOR
    assert keccak(sigs["Anchored"].encode()) == ANCHORED_TOPIC


def test_registry_result_decoding() -> None:
    from eth_abi.abi import encode

    assert decode_anchor_of(encode(["uint64"] * 4, [0, 0, 0, 0])) is None
    assert decode_anchor_of(encode(["uint64"] * 4, [3, 10, 99, 7])) == AnchorInfo(3, 10, 99, 7)
    with pytest.raises(ChainError) as info:
        decode_anchor_of(b"")
    assert info.value.code == "bad_registry_response"
    subject = report_subject("4403-0026 abcd")
    assert decode_revocation_of(subject, encode(["bytes32", "uint64"], [b"\0" * 32, 0])) is None
    revoked = decode_revocation_of(subject, encode(["bytes32", "uint64"], [b"\1" * 32, 5]))
    assert revoked is not None and revoked.reason == b"\1" * 32 and revoked.timestamp == 5


def test_report_subject() -> None:
    import hashlib

    expected = hashlib.sha256(b"jianzheng/report-code/44030026ABCD").digest()
    assert report_subject("44030026ABCD") == expected
    assert report_subject("4403-0026-abcd") == expected
    assert report_subject(" 4403 0026 ABCD ") == expected
    for bad in ("", "----", "4403_0026", "中文"):
        with pytest.raises(ValueError):
            report_subject(bad)


# --- property: any change to a proof is caught --------------------------------------------------


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_any_byte_change_is_rejected_or_fails(data: st.DataObject) -> None:
    proofs, _ = build_proofs(ancestry_records())
    chain = FakeChain()
    chain.anchor(proofs[0])
    doc = proofs[data.draw(st.integers(min_value=0, max_value=len(proofs) - 1))]
    original = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    tampered = bytearray(original)
    tampered[position] ^= 1 << bit
    try:
        proof = parse_proof(bytes(tampered))
    except InvalidProof:
        return  # unusable input
    if proof_to_dict(proof) == proof_to_dict(parse_proof(original)):
        return  # same meaning (e.g. hex case of the tx hash)
    assert not verify_proof(proof, chain, PINNED).bottom_line
