"""EvidenceRegistry on a real Hardhat node, through service.anchoring.contract.RegistryClient.

Reverts are checked by their decoded revert data (custom error name and arguments), both for a
mined failing transaction (replayed by wait_receipt) and for an eth_call simulation.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from service.anchoring import contract as registry_contract
from service.anchoring.contract import (
    ChainReverted,
    ChainTimeout,
    ChainUnreachable,
    ContractArtifactError,
    RegistryClient,
    RegistryRevert,
    TxReceipt,
    decode_revert,
    is_confirmed,
    load_artifact,
)
from service.anchoring.devchain import DEV_ACCOUNTS, free_port
from tests.anchoring_support import registry_transact
from tests.fixtures.chain import DevChain

ANCHORER_ROLE = keccak(text="ANCHORER_ROLE")
REVOKER_ROLE = keccak(text="REVOKER_ROLE")
DEFAULT_ADMIN_ROLE = b"\x00" * 32
# Topic hashes computed from INTERFACE.md's text, independently of the ABI.
ANCHORED_TOPIC = keccak(text="Anchored(uint64,bytes32,uint64,uint64)")
REVOKED_TOPIC = keccak(text="Revoked(bytes32,bytes32,uint64)")
OUTSIDER = DEV_ACCOUNTS[2]  # holds no role

_counter = itertools.count()


def unique32(label: str) -> bytes:
    """A fresh 32-byte value (roots, subjects, reasons) distinct across the session."""
    return hashlib.sha256(f"{label}/{next(_counter)}".encode()).digest()


def client(chain: DevChain, registry: str, key: str | None = None) -> RegistryClient:
    return RegistryClient(chain.rpc_url, registry, key or chain.service_key)


def anchor(c: RegistryClient, seq: int, root: bytes, leaf_count: int) -> TxReceipt:
    signed = c.build_anchor_tx(seq, root, leaf_count, c.pending_nonce())
    return c.wait_receipt(c.send_raw(signed.raw))


def failed_anchor(
    c: RegistryClient, seq: int, root: bytes, leaf_count: int, path: str
) -> RegistryRevert:
    """Attempt an anchor that must revert; return the decoded revert.

    path "mined": send the transaction; it is mined with status 0 and wait_receipt replays it.
    path "call": simulate it with eth_call (preflight_anchor); nothing is sent.
    """
    nonce_before = c.pending_nonce()
    with pytest.raises(ChainReverted) as info:
        if path == "mined":
            anchor(c, seq, root, leaf_count)
        else:
            c.preflight_anchor(seq, root, leaf_count)
    exc = info.value
    assert exc.code == "chain_reverted"
    if path == "mined":
        assert exc.receipt is not None and exc.receipt.status == 0
        assert c.pending_nonce() == nonce_before + 1
    else:
        assert exc.receipt is None
        assert c.pending_nonce() == nonce_before
    assert exc.revert is not None, exc.message
    return exc.revert


def transact(chain: DevChain, registry: str, key: str, fn: str, args: list[Any]) -> TxReceipt:
    """Send any registry call signed by ``key`` (for role management)."""
    return registry_transact(chain.rpc_url, registry, key, fn, args)


def only_log(receipt: TxReceipt, registry: str) -> Mapping[str, Any]:
    assert len(receipt.logs) == 1
    log = receipt.logs[0]
    assert str(log["address"]).lower() == registry.lower()
    return log


def topics(log: Mapping[str, Any]) -> list[bytes]:
    return [bytes.fromhex(str(t)[2:]) for t in log["topics"]]


def block_timestamp(c: RegistryClient, number: int) -> int:
    return int(c.rpc("eth_getBlockByNumber", [hex(number), False])["timestamp"], 16)


PATHS = pytest.mark.parametrize("path", ["mined", "call"])


# ----------------------------------------------------------------------------- roles


@pytest.mark.chain
def test_constructor_grants_the_three_roles(hardhat: DevChain, fresh_registry: str) -> None:
    c = client(hardhat, fresh_registry)
    assert c.has_role("DEFAULT_ADMIN_ROLE", hardhat.deployer_address)
    assert c.has_role("ANCHORER_ROLE", hardhat.service_address)
    assert c.has_role("REVOKER_ROLE", hardhat.service_address)
    assert not c.has_role("ANCHORER_ROLE", hardhat.deployer_address)
    assert not c.has_role("REVOKER_ROLE", hardhat.deployer_address)
    assert not c.has_role("DEFAULT_ADMIN_ROLE", hardhat.service_address)
    assert c.call(c.contract.encode_abi("ANCHORER_ROLE", args=[])) == ANCHORER_ROLE
    assert c.call(c.contract.encode_abi("REVOKER_ROLE", args=[])) == REVOKER_ROLE


@pytest.mark.chain
@PATHS
@pytest.mark.parametrize("who", [OUTSIDER, DEV_ACCOUNTS[0]], ids=["outsider", "admin"])
def test_only_anchorer_can_anchor(
    hardhat: DevChain, fresh_registry: str, path: str, who: Any
) -> None:
    c = client(hardhat, fresh_registry, who.private_key)
    revert = failed_anchor(c, 1, unique32("root"), 5, path)
    assert revert.name == "AccessControlUnauthorizedAccount"
    assert revert.args == (who.address, ANCHORER_ROLE)
    assert revert.named_args == {"account": who.address, "neededRole": ANCHORER_ROLE}
    assert c.batch_count() == 0


@pytest.mark.chain
@PATHS
def test_only_revoker_can_revoke(hardhat: DevChain, fresh_registry: str, path: str) -> None:
    c = client(hardhat, fresh_registry, OUTSIDER.private_key)
    subject = unique32("subject")
    with pytest.raises(ChainReverted) as info:
        if path == "mined":
            c.wait_receipt(c.send_raw(
                c.build_revoke_tx(subject, unique32("reason"), c.pending_nonce()).raw))
        else:
            c.revoke(subject, unique32("reason"))
    assert info.value.revert == RegistryRevert(
        "AccessControlUnauthorizedAccount", (OUTSIDER.address, REVOKER_ROLE),
        ("account", "neededRole"), info.value.data,
    )
    assert c.revocation_of(subject) is None


@pytest.mark.chain
def test_granted_role_is_what_authorises(hardhat: DevChain, fresh_registry: str) -> None:
    outsider = client(hardhat, fresh_registry, OUTSIDER.private_key)
    transact(hardhat, fresh_registry, hardhat.deployer_key, "grantRole",
             [ANCHORER_ROLE, OUTSIDER.address])
    anchor(outsider, 1, unique32("root"), 1)
    assert outsider.batch_count() == 1
    transact(hardhat, fresh_registry, hardhat.deployer_key, "revokeRole",
             [ANCHORER_ROLE, OUTSIDER.address])
    revert = failed_anchor(outsider, 2, unique32("root"), 1, "mined")
    assert revert.name == "AccessControlUnauthorizedAccount"
    # The service account (not admin) cannot hand out roles.
    with pytest.raises(ChainReverted) as info:
        transact(hardhat, fresh_registry, hardhat.service_key, "grantRole",
                 [ANCHORER_ROLE, OUTSIDER.address])
    assert info.value.revert is not None
    assert info.value.revert.args == (hardhat.service_address, DEFAULT_ADMIN_ROLE)


# ----------------------------------------------------------------------------- anchor rules


@pytest.mark.chain
@PATHS
def test_duplicate_root_reverts(hardhat: DevChain, fresh_registry: str, path: str) -> None:
    c = client(hardhat, fresh_registry)
    root = unique32("root")
    anchor(c, 1, root, 3)
    # Retrying the mined anchor and re-using the root for the next batch both fail the same way.
    for seq in (1, 2):
        revert = failed_anchor(c, seq, root, 3, path)
        assert revert.name == "EvidenceRegistryDuplicateRoot"
        assert revert.args == (root,)
    assert c.batch_count() == 1


@pytest.mark.chain
@PATHS
@pytest.mark.parametrize(("anchored", "seq"), [(0, 0), (0, 2), (2, 2), (2, 4), (2, 2**64 - 1)])
def test_sequence_gap_reverts(
    hardhat: DevChain, fresh_registry: str, path: str, anchored: int, seq: int
) -> None:
    c = client(hardhat, fresh_registry)
    for i in range(1, anchored + 1):
        anchor(c, i, unique32("root"), 1)
    revert = failed_anchor(c, seq, unique32("root"), 1, path)
    assert revert.name == "EvidenceRegistrySequenceGap"
    assert revert.named_args == {"expected": anchored + 1, "got": seq}
    assert c.batch_count() == anchored


@pytest.mark.chain
@PATHS
def test_empty_batch_reverts(hardhat: DevChain, fresh_registry: str, path: str) -> None:
    c = client(hardhat, fresh_registry)
    root = unique32("root")
    revert = failed_anchor(c, 1, root, 0, path)
    assert (revert.name, revert.args) == ("EvidenceRegistryEmptyBatch", ())
    assert c.anchor_of(root) is None
    assert c.batch_count() == 0


# ----------------------------------------------------------------------------- writes and reads


@pytest.mark.chain
def test_anchor_event_and_reads(hardhat: DevChain, fresh_registry: str) -> None:
    c = client(hardhat, fresh_registry)
    assert c.batch_count() == 0
    written = []
    for seq, leaf_count in ((1, 1), (2, 1000), (3, 2**64 - 1)):
        root = unique32("root")
        receipt = anchor(c, seq, root, leaf_count)
        timestamp = block_timestamp(c, receipt.block_number)
        log = only_log(receipt, fresh_registry)
        assert topics(log) == [ANCHORED_TOPIC, seq.to_bytes(32, "big"), root]
        data = bytes.fromhex(str(log["data"])[2:])
        assert data == abi_encode(["uint64", "uint64"], [leaf_count, timestamp])
        assert c.batch_count() == seq
        written.append((seq, root, leaf_count, timestamp, receipt))
    for seq, root, leaf_count, timestamp, receipt in written:
        info = c.anchor_of(root)
        assert info is not None
        assert (info.seq, info.leaf_count, info.timestamp, info.block_number) == (
            seq, leaf_count, timestamp, receipt.block_number)
        found = c.find_anchor_tx(seq, root)
        assert found is not None
        assert (found.tx_hash, found.block_number, found.leaf_count, found.timestamp) == (
            receipt.tx_hash, receipt.block_number, leaf_count, timestamp)
        # Filtering is on both indexed topics: a right root with a wrong seq finds nothing.
        assert c.find_anchor_tx(seq + 1, root) is None


@pytest.mark.chain
def test_unknown_root_and_subject_read_as_zeros(hardhat: DevChain, fresh_registry: str) -> None:
    c = client(hardhat, fresh_registry)
    anchor(c, 1, unique32("root"), 1)
    root = unique32("never anchored")
    raw = c.call(c.contract.encode_abi("anchorOf", args=[root]))
    assert abi_decode(["uint64"] * 4, raw) == (0, 0, 0, 0)
    assert c.anchor_of(root) is None
    raw = c.call(c.contract.encode_abi("revocationOf", args=[root]))
    assert abi_decode(["bytes32", "uint64"], raw) == (b"\x00" * 32, 0)
    assert c.revocation_of(root) is None
    assert c.find_anchor_tx(1, root) is None


@pytest.mark.chain
def test_revoke_event_reads_and_double_revocation(hardhat: DevChain, fresh_registry: str) -> None:
    c = client(hardhat, fresh_registry)
    subject, reason = unique32("subject"), unique32("reason")
    receipt = c.revoke(subject, reason)
    timestamp = block_timestamp(c, receipt.block_number)
    log = only_log(receipt, fresh_registry)
    assert topics(log) == [REVOKED_TOPIC, subject]
    assert bytes.fromhex(str(log["data"])[2:]) == abi_encode(
        ["bytes32", "uint64"], [reason, timestamp])
    info = c.revocation_of(subject)
    assert info is not None and (info.reason, info.timestamp) == (reason, timestamp)

    # Second revocation: refused by the simulation and, if sent anyway, by the contract.
    with pytest.raises(ChainReverted) as simulated:
        c.revoke(subject, unique32("other reason"))
    with pytest.raises(ChainReverted) as mined:
        c.wait_receipt(c.send_raw(
            c.build_revoke_tx(subject, unique32("other reason"), c.pending_nonce()).raw))
    for exc in (simulated.value, mined.value):
        assert exc.revert is not None
        assert (exc.revert.name, exc.revert.args) == ("EvidenceRegistryAlreadyRevoked", (subject,))
    assert mined.value.receipt is not None and mined.value.receipt.status == 0
    info = c.revocation_of(subject)
    assert info is not None and (info.reason, info.timestamp) == (reason, timestamp)
    # Revocation and anchoring are independent.
    assert c.batch_count() == 0


def test_service_role_ids_and_topics_are_the_interfaces() -> None:
    assert registry_contract.ANCHORER_ROLE == ANCHORER_ROLE
    assert registry_contract.REVOKER_ROLE == REVOKER_ROLE
    assert registry_contract.DEFAULT_ADMIN_ROLE == DEFAULT_ADMIN_ROLE
    c = RegistryClient("http://127.0.0.1:9", DEV_ACCOUNTS[2].address, OUTSIDER.private_key)
    assert (c.anchored_topic, c.revoked_topic) == ("0x" + ANCHORED_TOPIC.hex(),
                                                   "0x" + REVOKED_TOPIC.hex())


def test_confirmations_count_blocks_after_the_transactions_own() -> None:
    assert is_confirmed(10, 10, 0)
    assert not is_confirmed(10, 11, 2)
    assert is_confirmed(10, 12, 2)
    assert not is_confirmed(10, 9, 0)  # a head behind the receipt (another node) is not final


@pytest.mark.chain
def test_receipt_wait_honours_confirmations(hardhat: DevChain, fresh_registry: str) -> None:
    c = client(hardhat, fresh_registry)
    subject, reason = unique32("subject"), unique32("reason")
    signed = c.build_revoke_tx(subject, reason, c.pending_nonce())
    tx_hash = c.send_raw(signed.raw)
    assert c.wait_receipt(tx_hash, timeout=5, confirmations=0).tx_hash == tx_hash
    with pytest.raises(ChainTimeout, match="not 1 blocks deep after 0.2 s"):
        c.wait_mined(tx_hash, timeout=0.2, confirmations=1)
    c.rpc("evm_mine", [])
    receipt = c.wait_mined(tx_hash, timeout=5, confirmations=1, what="revoke tx")
    assert c.confirmed(receipt.block_number, 1) and not c.confirmed(receipt.block_number, 2)
    found = c.find_revoke_tx(subject)
    assert found is not None and found.tx_hash == tx_hash and found.reason == reason
    assert found.block_number == receipt.block_number
    assert c.find_revoke_tx(unique32("never revoked")) is None


@pytest.mark.chain
def test_session_registry_is_usable(hardhat: DevChain) -> None:
    c = client(hardhat, hardhat.registry)
    assert c.chain_id() == hardhat.chain_id == 31337
    seq = c.batch_count() + 1
    root = unique32("root")
    anchor(c, seq, root, 7)
    info = c.anchor_of(root)
    assert info is not None and info.seq == seq and info.leaf_count == 7


# ----------------------------------------------------------------------------- no node needed


def test_decode_revert_against_the_abi() -> None:
    abi = load_artifact()["abi"]
    gap = keccak(text="EvidenceRegistrySequenceGap(uint64,uint64)")[:4]
    data = gap + abi_encode(["uint64", "uint64"], [4, 9])
    assert decode_revert(data, abi) == RegistryRevert(
        "EvidenceRegistrySequenceGap", (4, 9), ("expected", "got"), data)
    assert decode_revert("0x" + data.hex(), abi) == decode_revert(data, abi)
    error_string = bytes.fromhex("08c379a0") + abi_encode(["string"], ["nope"])
    revert = decode_revert(error_string, abi)
    assert revert is not None and (revert.name, revert.args) == ("Error", ("nope",))
    assert decode_revert(b"", abi) is None
    assert decode_revert(b"\xde\xad\xbe\xef", abi) is None  # unknown selector
    assert decode_revert(data[:-1], abi) is None  # truncated arguments
    assert decode_revert(gap, abi) is None  # arguments missing


def test_unreachable_node_raises_chain_unreachable() -> None:
    registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    c = RegistryClient(f"http://127.0.0.1:{free_port()}", registry, DEV_ACCOUNTS[1].private_key,
                       rpc_timeout=2.0)
    with pytest.raises(ChainUnreachable) as info:
        c.batch_count()
    assert info.value.code == "chain_unreachable"


def test_artifact_path_override(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "artifact.json"
    bad.write_text('{"abi": []}')
    monkeypatch.setenv("JZ_CONTRACT_ARTIFACT", str(bad))
    with pytest.raises(ContractArtifactError) as info:
        load_artifact()
    assert info.value.code == "contract_artifact_invalid"
    monkeypatch.delenv("JZ_CONTRACT_ARTIFACT")
    assert load_artifact()["contractName"] == "EvidenceRegistry"


def test_revert_sent_with_http_error_status_is_still_decoded() -> None:
    """A node answering a revert with HTTP 500 (and a JSON-RPC body) is not 'unreachable'."""
    gap = keccak(text="EvidenceRegistrySequenceGap(uint64,uint64)")[:4]
    data = "0x" + (gap + abi_encode(["uint64", "uint64"], [3, 8])).hex()
    body = json.dumps({"jsonrpc": "2.0", "id": 0,
                       "error": {"code": 3, "message": "execution reverted", "data": data}})

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        c = RegistryClient(f"http://127.0.0.1:{server.server_port}",
                           "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                           DEV_ACCOUNTS[1].private_key)
        with pytest.raises(ChainReverted) as info:
            c.preflight_anchor(8, b"\x01" * 32, 1)
        assert info.value.revert is not None
        assert info.value.revert.named_args == {"expected": 3, "got": 8}
    finally:
        server.shutdown()
        server.server_close()
