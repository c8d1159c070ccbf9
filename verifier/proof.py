"""``jianzheng-proof/1``: parsing with hard limits, and the six checks of one proof.

The checks are pure functions of the proof and the chain data they need (numbered as in
the ``ProofVerification`` docstring). ``verify_proof`` is the thin adapter that reads that
data from a ``ChainSource`` and turns an unreachable node into a failed ``chain_unreachable``
check instead of an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from verifier.canonical import canonicalize, loads_strict
from verifier.chain import ChainSource, decode_anchored_log
from verifier.errors import CanonicalizationError, ChainError, InvalidProof
from verifier.merkle import DEFAULT_ALG, HASH_ALGS, MAX_PATH_LEN, leaf_hash, root_from_path
from verifier.models import (
    AnchorInfo,
    AnchorRef,
    BatchInfo,
    Check,
    Proof,
    ProofVerification,
    Receipt,
)

PROOF_FORMAT = "jianzheng-proof/1"
#: Largest proof document accepted, in bytes (the record plus a 64-hash path fit easily).
MAX_PROOF_BYTES = 4 * 1024 * 1024
MAX_UINT64 = 2**64 - 1
#: Chain ids accepted (EIP-155 ids in practice fit far below this).
MAX_CHAIN_ID = MAX_UINT64

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TX_HASH_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Pins:
    """What the verifier trusts: the chain id and registry it was told to check against.

    None means "not pinned": the proof's own value is used and the check says so in a warning.
    """

    chain_id: int | None = None
    registry: str | None = None

    def __post_init__(self) -> None:
        if self.registry is not None:
            object.__setattr__(self, "registry", parse_address(self.registry, "registry"))
        if self.chain_id is not None and not 1 <= self.chain_id <= MAX_CHAIN_ID:
            raise ValueError(f"chain id {self.chain_id} out of range")


# --- parsing -------------------------------------------------------------------------------


def parse_proof(data: bytes | str | Mapping[str, Any]) -> Proof:
    """Parse a ``jianzheng-proof/1`` document (JSON bytes/text or an already parsed object).

    Raises InvalidProof for anything malformed: too large, not strict JSON, unknown format,
    a missing or ill-typed field, a hash that is not 64 lowercase hex, an address that is
    not ``0x`` + 40 hex (with a valid EIP-55 checksum if mixed case), an integer out of
    range, a path longer than MAX_PATH_LEN, or a record without a canonical form.
    Unknown extra members are ignored (INTERFACE.md lets the project add fields).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes):
        if len(data) > MAX_PROOF_BYTES:
            raise InvalidProof(
                f"proof is {len(data)} bytes, more than the limit of {MAX_PROOF_BYTES}",
                code="proof_too_large",
            )
        try:
            doc = loads_strict(data, max_bytes=MAX_PROOF_BYTES)
        except CanonicalizationError as exc:
            raise InvalidProof(f"proof is not strict JSON: {exc.message}",
                               code="invalid_json") from exc
    else:
        doc = data
    obj = _object(doc, "proof")
    fmt = obj.get("format")
    if fmt != PROOF_FORMAT:
        raise InvalidProof(
            f"unknown proof format {fmt!r} (expected {PROOF_FORMAT!r})", code="unknown_format"
        )
    record = _object(obj.get("record"), "record")
    try:
        canonical = canonicalize(record)
    except CanonicalizationError as exc:
        raise InvalidProof(f"record has no canonical form: {exc.message}",
                           code="bad_record") from exc
    if len(canonical) > MAX_PROOF_BYTES:
        raise InvalidProof("record exceeds the proof size limit", code="proof_too_large")

    batch_obj = _object(obj.get("batch"), "batch")
    path_value = batch_obj.get("path")
    if not isinstance(path_value, list):
        raise InvalidProof("batch.path must be a list", code="bad_field")
    if len(path_value) > MAX_PATH_LEN:
        raise InvalidProof(
            f"batch.path has {len(path_value)} hashes, more than {MAX_PATH_LEN}",
            code="path_too_long",
        )
    batch = BatchInfo(
        seq=_int(batch_obj, "seq", 1, MAX_UINT64, "batch"),
        tree_size=_int(batch_obj, "tree_size", 1, MAX_UINT64, "batch"),
        leaf_index=_int(batch_obj, "leaf_index", 0, MAX_UINT64 - 1, "batch"),
        root=_hash(batch_obj.get("root"), "batch.root"),
        path=tuple(_hash(p, f"batch.path[{i}]") for i, p in enumerate(path_value)),
    )
    anchor_obj = _object(obj.get("anchor"), "anchor")
    tx_hash = anchor_obj.get("tx_hash")
    if not isinstance(tx_hash, str) or not _TX_HASH_RE.match(tx_hash):
        raise InvalidProof("anchor.tx_hash must be 0x + 64 hex digits", code="bad_field")
    anchor = AnchorRef(
        chain_id=_int(anchor_obj, "chain_id", 1, MAX_CHAIN_ID, "anchor"),
        registry=_address_field(anchor_obj.get("registry"), "anchor.registry"),
        tx_hash=tx_hash.lower(),
        block_number=_int(anchor_obj, "block_number", 0, MAX_UINT64, "anchor"),
        block_timestamp=_int(anchor_obj, "block_timestamp", 0, MAX_UINT64, "anchor"),
    )
    alg = obj.get("hash", DEFAULT_ALG)
    if alg not in HASH_ALGS:
        raise InvalidProof(
            f"unknown log hash {alg!r} (expected one of {', '.join(HASH_ALGS)})",
            code="unknown_hash",
        )
    return Proof(
        format=PROOF_FORMAT,
        record=record,
        leaf_hash=_hash(obj.get("leaf_hash"), "leaf_hash"),
        batch=batch,
        anchor=anchor,
        hash=alg,
    )


def proof_to_dict(proof: Proof) -> dict[str, Any]:
    """The JSON object of a proof (inverse of ``parse_proof``)."""
    out: dict[str, Any] = {} if proof.hash == DEFAULT_ALG else {"hash": proof.hash}
    return out | {
        "format": proof.format,
        "record": dict(proof.record),
        "leaf_hash": proof.leaf_hash.hex(),
        "batch": {
            "seq": proof.batch.seq,
            "tree_size": proof.batch.tree_size,
            "leaf_index": proof.batch.leaf_index,
            "root": proof.batch.root.hex(),
            "path": [p.hex() for p in proof.batch.path],
        },
        "anchor": {
            "chain_id": proof.anchor.chain_id,
            "registry": proof.anchor.registry,
            "tx_hash": proof.anchor.tx_hash,
            "block_number": proof.anchor.block_number,
            "block_timestamp": proof.anchor.block_timestamp,
        },
    }


def parse_address(value: object, what: str = "address") -> str:
    """An Ethereum address, lowercased; mixed case must carry a valid EIP-55 checksum."""
    return _address_field(value, what, error=ValueError)


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidProof(f"{what} must be a JSON object", code="bad_field")
    for key in value:
        if not isinstance(key, str):
            raise InvalidProof(f"{what} has a non-string member name", code="bad_field")
    return value


def _int(obj: Mapping[str, Any], key: str, low: int, high: int, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidProof(f"{where}.{key} must be an integer", code="bad_field")
    if not low <= value <= high:
        raise InvalidProof(f"{where}.{key} = {value} is outside {low}..{high}", code="bad_field")
    return value


def _hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HASH_RE.match(value):
        raise InvalidProof(f"{what} must be 64 lowercase hex digits", code="bad_field")
    return bytes.fromhex(value)


def _address_field(
    value: object, what: str, error: type[Exception] = InvalidProof
) -> str:
    def fail(message: str) -> Exception:
        if error is InvalidProof:
            return InvalidProof(message, code="bad_field")
        return error(message)

    if not isinstance(value, str) or not _ADDRESS_RE.match(value):
        raise fail(f"{what} must be 0x + 40 hex digits")
    body = value[2:]
    if body != body.lower() and body != body.upper() and not _eip55_ok(body):
        raise fail(f"{what} {value} has an invalid EIP-55 checksum")
    return "0x" + body.lower()


def _eip55_ok(body: str) -> bool:
    digest = keccak(body.lower().encode("ascii")).hex()
    for char, nibble in zip(body, digest[: len(body)], strict=True):
        if char.isalpha() and char.isupper() != (int(nibble, 16) >= 8):
            return False
    return True


# --- the pure checks -------------------------------------------------------------------------


def _check(proof: Proof, name: str, ok: bool, detail: str, warning: bool = False) -> Check:
    return Check(
        name=name,
        ok=ok,
        detail=detail,
        record_id=proof.record_id,
        record_type=proof.record_type,
        warning=warning,
    )


def _short(value: bytes) -> str:
    return value.hex()[:16] + "…"


def check_record_hash(proof: Proof) -> Check:
    """(1) H(0x00 || JCS(record)) equals the proof's ``leaf_hash`` (H: the proof's hash)."""
    try:
        computed = leaf_hash(canonicalize(proof.record), proof.hash)
    except CanonicalizationError as exc:
        return _check(proof, "record_hash", False, f"record has no canonical form: {exc}")
    if computed != proof.leaf_hash:
        return _check(
            proof,
            "record_hash",
            False,
            f"record hashes ({proof.hash}) to {computed.hex()}, proof claims leaf_hash "
            f"{proof.leaf_hash.hex()} (the record was changed, or the proof names the wrong "
            "log hash)",
        )
    return _check(proof, "record_hash", True, f"record hashes to leaf {_short(computed)}")


def check_inclusion(proof: Proof) -> Check:
    """(2) The audit path leads from ``leaf_hash`` at ``leaf_index`` to ``root``."""
    b = proof.batch
    try:
        computed = root_from_path(proof.leaf_hash, b.leaf_index, b.tree_size, b.path, proof.hash)
    except InvalidProof as exc:
        return _check(proof, "inclusion", False, f"audit path unusable: {exc.message}")
    if computed != b.root:
        return _check(
            proof,
            "inclusion",
            False,
            f"audit path leads to {computed.hex()}, not to the batch root {b.root.hex()}",
        )
    return _check(
        proof,
        "inclusion",
        True,
        f"leaf {b.leaf_index} of {b.tree_size} leads to root {_short(b.root)} "
        f"({len(b.path)} hashes)",
    )


def check_anchor(proof: Proof, anchor_info: AnchorInfo | None, registry: str) -> Check:
    """(3) ``anchorOf(root)`` on ``registry`` returns the proof's seq, tree size, block, time."""
    b, a = proof.batch, proof.anchor
    if anchor_info is None:
        return _check(
            proof,
            "anchor",
            False,
            f"root {b.root.hex()} was never anchored in registry {registry}",
        )
    mismatches = [
        f"{name}: chain says {actual}, proof says {claimed}"
        for name, actual, claimed in (
            ("seq", anchor_info.seq, b.seq),
            ("leaf count", anchor_info.leaf_count, b.tree_size),
            ("block number", anchor_info.block_number, a.block_number),
            ("block timestamp", anchor_info.timestamp, a.block_timestamp),
        )
        if actual != claimed
    ]
    if mismatches:
        return _check(proof, "anchor", False, "anchorOf(root) differs: " + "; ".join(mismatches))
    return _check(
        proof,
        "anchor",
        True,
        f"batch {b.seq} ({b.tree_size} leaves) anchored in block {a.block_number} "
        f"at {a.block_timestamp}",
    )


def check_anchor_event(proof: Proof, receipt: Receipt | None, registry: str) -> Check:
    """(4) Transaction ``tx_hash`` emitted ``Anchored(seq, root, leafCount, timestamp)``
    from ``registry`` with the proof's values, in the proof's block."""
    b, a = proof.batch, proof.anchor
    name = "anchor_event"
    if receipt is None:
        return _check(proof, name, False, f"transaction {a.tx_hash} not found on this chain")
    if receipt.status != 1:
        return _check(proof, name, False, f"transaction {a.tx_hash} reverted")
    if receipt.block_number != a.block_number:
        return _check(
            proof,
            name,
            False,
            f"transaction {a.tx_hash} is in block {receipt.block_number}, "
            f"proof says {a.block_number}",
        )
    events = [
        decoded
        for log in receipt.logs
        if log.address == registry and (decoded := decode_anchored_log(log)) is not None
    ]
    if not events:
        return _check(
            proof,
            name,
            False,
            f"transaction {a.tx_hash} emitted no Anchored event from registry {registry}",
        )
    for seq, root, leaf_count, timestamp in events:
        if root != b.root:
            continue
        if (seq, leaf_count, timestamp) == (b.seq, b.tree_size, a.block_timestamp):
            return _check(
                proof, name, True, f"Anchored({seq}, {_short(root)}, {leaf_count}, {timestamp})"
                f" in transaction {a.tx_hash[:18]}…"
            )
        return _check(
            proof,
            name,
            False,
            f"Anchored event has seq {seq}, leafCount {leaf_count}, timestamp {timestamp}; "
            f"proof says {b.seq}, {b.tree_size}, {a.block_timestamp}",
        )
    return _check(
        proof,
        name,
        False,
        f"transaction {a.tx_hash} anchored other roots, not {b.root.hex()}",
    )


def check_chain_id(proof: Proof, node_chain_id: int, pinned: int | None) -> Check:
    """(5) The node's chain is the proof's chain, and the pinned one when pinned."""
    claimed = proof.anchor.chain_id
    if node_chain_id != claimed:
        return _check(
            proof, "chain_id", False, f"node is chain {node_chain_id}, proof says {claimed}"
        )
    if pinned is None:
        return _check(
            proof,
            "chain_id",
            True,
            f"chain {claimed} not pinned (--chain-id): trusting the proof's own value",
            warning=True,
        )
    if pinned != claimed:
        return _check(
            proof, "chain_id", False, f"proof names chain {claimed}, pinned chain is {pinned}"
        )
    return _check(proof, "chain_id", True, f"chain {claimed} as pinned")


def check_registry(proof: Proof, pinned: str | None) -> Check:
    """(6) The proof's registry is the pinned one (a warning when none is pinned)."""
    claimed = proof.anchor.registry
    if pinned is None:
        return _check(
            proof,
            "registry",
            True,
            f"registry {claimed} not pinned (--registry): trusting the proof's own value",
            warning=True,
        )
    if pinned.lower() != claimed:
        return _check(
            proof,
            "registry",
            False,
            f"proof names registry {claimed}, pinned registry is {pinned.lower()}",
        )
    return _check(proof, "registry", True, f"registry {claimed} as pinned")


def evaluate_proof(
    proof: Proof,
    pins: Pins,
    *,
    node_chain_id: int,
    anchor_info: AnchorInfo | None,
    receipt: Receipt | None,
) -> ProofVerification:
    """All six checks from chain data already in hand (pure)."""
    registry = pins.registry or proof.anchor.registry
    return ProofVerification(
        record_id=proof.record_id,
        record_type=proof.record_type,
        record_hash=check_record_hash(proof),
        inclusion=check_inclusion(proof),
        anchor=check_anchor(proof, anchor_info, registry),
        anchor_event=check_anchor_event(proof, receipt, registry),
        chain_id=check_chain_id(proof, node_chain_id, pins.chain_id),
        registry=check_registry(proof, pins.registry),
    )


# --- the adapter ------------------------------------------------------------------------------


def verify_proof(proof: Proof, chain: ChainSource, pins: Pins | None = None) -> ProofVerification:
    """Verify ``proof`` against ``chain``, trusting ``pins`` (see Pins).

    The registry queried is the pinned one when pinned, else the proof's. Chain trouble
    never raises: an unreachable node makes each chain check a failed ``chain_unreachable``
    check; a node that answers nonsense fails the check that needed the answer.
    """
    pins = pins or Pins()
    registry = pins.registry or proof.anchor.registry

    def chain_failure(name: str, exc: ChainError) -> Check:
        if exc.unreachable:
            return _check(proof, "chain_unreachable", False, f"{name} not checked: {exc.message}")
        return _check(proof, name, False, exc.message)

    chain_id_check: Check
    try:
        chain_id_check = check_chain_id(proof, chain.chain_id(), pins.chain_id)
    except ChainError as exc:
        chain_id_check = chain_failure("chain_id", exc)
    anchor_check: Check
    try:
        anchor_check = check_anchor(proof, chain.anchor_of(registry, proof.batch.root), registry)
    except ChainError as exc:
        anchor_check = chain_failure("anchor", exc)
    event_check: Check
    try:
        receipt = chain.get_transaction_receipt(proof.anchor.tx_hash)
        event_check = check_anchor_event(proof, receipt, registry)
    except ChainError as exc:
        event_check = chain_failure("anchor_event", exc)
    return ProofVerification(
        record_id=proof.record_id,
        record_type=proof.record_type,
        record_hash=check_record_hash(proof),
        inclusion=check_inclusion(proof),
        anchor=anchor_check,
        anchor_event=event_check,
        chain_id=chain_id_check,
        registry=check_registry(proof, pins.registry),
    )
