"""Client for the on-chain EvidenceRegistry (INTERFACE.md section 2).

Transactions are signed locally (eth-account, coincurve backend) and sent raw; the node never
holds a key. Every JSON-RPC call of the service goes through one place (:meth:`ChainRpc.rpc`,
which RegistryClient, the dev-chain helpers and the start-up checks share) so that failures
map onto one small exception tree rooted at :class:`ChainError`, each with a stable ``code``.
Reverts are recognised by their revert data, decoded against the contract ABI, never by
exception class or message text (Hardhat, anvil and Besu word them differently).

A mined transaction that failed (receipt status 0) carries no revert data; it is recovered by
replaying the transaction with ``eth_call`` against the state before its block, which is exact
when the block holds only that transaction (automining dev nodes) and best effort otherwise.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import requests
import rlp
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_typing import ABIError, ABIFunction
from eth_utils.abi import function_abi_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.providers import HTTPProvider
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from verifier.chain import (
    ANCHORED_EVENT_SIGNATURE,
    ANCHORED_TOPIC,
    REVOKED_EVENT_SIGNATURE,
    REVOKED_TOPIC,
)
from verifier.models import AnchorInfo, RevocationInfo

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACT_PATH = REPO_ROOT / "contracts" / "EvidenceRegistry.json"
ARTIFACT_ENV = "JZ_CONTRACT_ARTIFACT"

#: Gas limits sent with every transaction (no estimation round trip). Measured on Hardhat 2.29
#: and anvil 1.7 (cancun): the first anchor of a registry 72.0k gas (batch counter slot goes
#: from zero to non-zero), later anchors 54.9k; a revocation 71.1k. About 2x headroom.
ANCHOR_GAS_LIMIT = 150_000
REVOKE_GAS_LIMIT = 150_000
#: Contract creation measured at 649.7k gas.
DEPLOY_GAS_LIMIT = 1_500_000
#: Most blocks one ``eth_getLogs`` may span: Besu refuses longer ranges
#: (``--rpc-max-logs-range``, 1,000 by default), other nodes cap the answer size.
MAX_LOG_RANGE = 1_000
#: Default HTTP timeout for one JSON-RPC request, seconds.
DEFAULT_RPC_TIMEOUT = 10.0
#: Attempts per read-only JSON-RPC call when the connection fails (web3's retry, 0.1 s backoff
#: doubling); HTTP error statuses are not retried (they may carry a JSON-RPC revert).
RPC_CONNECT_ATTEMPTS = 3
#: How long wait_mined / wait_receipt wait by default, seconds (chain.receipt_timeout_s).
DEFAULT_RECEIPT_TIMEOUT = 60.0
#: Receipt polling: the first pause, doubled after every poll up to the longest, seconds.
#: (An automining dev node mines within milliseconds; a QBFT network in a block time.)
RECEIPT_POLL_FIRST = 0.005
RECEIPT_POLL_MAX = 0.25

#: OpenZeppelin AccessControl role ids (INTERFACE §2): keccak256 of the role's name, and
#: zero for the admin role.
DEFAULT_ADMIN_ROLE = b"\x00" * 32
ANCHORER_ROLE = keccak(text="ANCHORER_ROLE")
REVOKER_ROLE = keccak(text="REVOKER_ROLE")
ROLE_IDS: Mapping[str, bytes] = {
    "DEFAULT_ADMIN_ROLE": DEFAULT_ADMIN_ROLE,
    "ANCHORER_ROLE": ANCHORER_ROLE,
    "REVOKER_ROLE": REVOKER_ROLE,
}

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


# --------------------------------------------------------------------------- errors


class ChainError(Exception):
    """Root of every chain failure. ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "chain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChainUnreachable(ChainError):
    """The node could not be reached (connection refused, timeout)."""

    code = "chain_unreachable"


class ChainBadResponse(ChainError):
    """The node answered with an HTTP error or something that is not the expected JSON-RPC."""

    code = "chain_bad_response"


class ChainRejected(ChainError):
    """The node refused the request without a revert (nonce too low, underpriced, no funds)."""

    code = "chain_rejected"

    def __init__(self, message: str, rpc_code: int | None = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code


class ChainReverted(ChainError):
    """The contract reverted. ``revert`` is the decoded error if the revert data is known."""

    code = "chain_reverted"

    def __init__(
        self,
        message: str,
        data: bytes = b"",
        revert: RegistryRevert | None = None,
        receipt: TxReceipt | None = None,
    ) -> None:
        super().__init__(message)
        self.data = data
        self.revert = revert
        self.receipt = receipt


class ChainTimeout(ChainError):
    """A transaction was not mined (or not confirmed deeply enough) in time."""

    code = "chain_timeout"


class ContractArtifactError(ChainError):
    """The compiled contract artifact is missing or malformed."""

    code = "contract_artifact_invalid"


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class RegistryRevert:
    """A decoded revert: ``name`` of the custom error (or ``Error``/``Panic``), its arguments
    in declaration order (bytes32 as bytes, addresses checksummed), and the raw data."""

    name: str
    args: tuple[Any, ...]
    arg_names: tuple[str, ...] = ()
    data: bytes = b""

    @property
    def named_args(self) -> dict[str, Any]:
        return dict(zip(self.arg_names, self.args, strict=True))


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    hash: str  # 0x-prefixed lowercase hex


@dataclass(frozen=True)
class Fees:
    """Fee fields for a transaction: EIP-1559 when the node has a base fee, else legacy."""

    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    gas_price: int | None = None

    def as_tx_fields(self) -> dict[str, int]:
        if self.gas_price is not None:
            return {"gasPrice": self.gas_price}
        assert self.max_fee_per_gas is not None and self.max_priority_fee_per_gas is not None
        return {
            "maxFeePerGas": self.max_fee_per_gas,
            "maxPriorityFeePerGas": self.max_priority_fee_per_gas,
        }


@dataclass(frozen=True)
class TxReceipt:
    tx_hash: str
    block_number: int
    block_hash: str
    status: int
    gas_used: int
    contract_address: str | None
    logs: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class RevokeTx:
    """The transaction that emitted ``Revoked(subject, ...)``."""

    tx_hash: str
    block_number: int
    subject: bytes
    reason: bytes
    timestamp: int


@dataclass(frozen=True)
class AnchorTx:
    """The transaction that emitted ``Anchored(seq, root, ...)``."""

    tx_hash: str
    block_number: int
    seq: int
    root: bytes
    leaf_count: int
    timestamp: int


def signed_tx_fees(raw: bytes) -> tuple[int, Fees]:
    """The nonce and fee fields of a signed raw transaction (EIP-1559 or legacy)."""
    if raw and raw[0] >= 0xC0:  # legacy: rlp [nonce, gasPrice, gas, to, value, data, v, r, s]
        fields = rlp.decode(raw)
        return int.from_bytes(fields[0], "big"), Fees(gas_price=int.from_bytes(fields[1], "big"))
    tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    if "gasPrice" in tx:
        return int(tx["nonce"]), Fees(gas_price=int(tx["gasPrice"]))
    return int(tx["nonce"]), Fees(
        max_fee_per_gas=int(tx["maxFeePerGas"]),
        max_priority_fee_per_gas=int(tx["maxPriorityFeePerGas"]),
    )


def bumped_fees(old: Fees, current: Fees, percent: int, cap: int = 0) -> Fees | None:
    """Fees for a replacement of a transaction signed with ``old`` (same nonce): each field
    raised by ``percent`` (nodes want at least 10 %) and at least what the node asks now
    (``current``); at most ``cap`` wei per gas when ``cap`` > 0. None when nothing can be
    raised: a network without gas charges (all zero), or the cap reached."""

    def up(value: int) -> int:
        return value + max(1, -(-value * percent // 100))

    if old.gas_price is not None:
        if old.gas_price == 0:
            return None
        price = max(up(old.gas_price), current.gas_price or current.max_fee_per_gas or 0)
        if cap and price > cap:
            price = cap
        return Fees(gas_price=price) if price > old.gas_price else None
    assert old.max_fee_per_gas is not None and old.max_priority_fee_per_gas is not None
    if old.max_fee_per_gas == 0:
        return None
    tip = max(up(old.max_priority_fee_per_gas), current.max_priority_fee_per_gas or 0)
    fee = max(up(old.max_fee_per_gas), current.max_fee_per_gas or current.gas_price or 0, tip)
    if cap and fee > cap:
        fee = cap
        tip = min(tip, cap)
    if fee <= old.max_fee_per_gas or tip <= old.max_priority_fee_per_gas:
        return None
    return Fees(max_fee_per_gas=fee, max_priority_fee_per_gas=tip)


def is_confirmed(block_number: int, head: int, confirmations: int) -> bool:
    """Whether a transaction mined in block ``block_number`` is final enough with the chain
    at block ``head``: ``confirmations`` is the number of blocks *after* its own block
    (0: mined is enough). The one meaning of ``chain.confirmations``."""
    return head >= block_number + confirmations


# --------------------------------------------------------------------------- artifact


def load_artifact(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read the compiled contract artifact (``contracts/EvidenceRegistry.json`` unless
    ``path`` or the ``JZ_CONTRACT_ARTIFACT`` environment variable names another file)."""
    chosen = Path(path or os.environ.get(ARTIFACT_ENV) or DEFAULT_ARTIFACT_PATH)
    try:
        artifact = json.loads(chosen.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContractArtifactError(f"cannot read contract artifact {chosen}: {exc}") from exc
    if not isinstance(artifact, dict):
        raise ContractArtifactError(f"{chosen}: artifact is not a JSON object")
    for key in ("abi", "bytecode", "deployedBytecode"):
        if key not in artifact:
            raise ContractArtifactError(f"{chosen}: artifact lacks {key!r}")
    if not isinstance(artifact["abi"], list):
        raise ContractArtifactError(f"{chosen}: 'abi' is not a list")
    return artifact


def _error_table(abi: Sequence[Mapping[str, Any]]) -> dict[bytes, Mapping[str, Any]]:
    table: dict[bytes, Mapping[str, Any]] = {}
    for entry in abi:
        if entry.get("type") == "error":
            table[bytes(function_abi_to_4byte_selector(cast(ABIError, dict(entry))))] = entry
    return table


def decode_revert(
    data: bytes | str | None, abi: Sequence[Mapping[str, Any]] | None = None
) -> RegistryRevert | None:
    """Decode revert data against the registry ABI (custom errors, ``Error(string)``,
    ``Panic(uint256)``). Returns None for empty data or an unknown selector."""
    raw = _to_bytes(data) if data is not None else b""
    if len(raw) < 4:
        return None
    selector, payload = raw[:4], raw[4:]
    if selector == _ERROR_STRING_SELECTOR:
        entry: Mapping[str, Any] = {"name": "Error", "inputs": [{"name": "message",
                                                                  "type": "string"}]}
    elif selector == _PANIC_SELECTOR:
        entry = {"name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]}
    else:
        found = _error_table(abi if abi is not None else load_artifact()["abi"]).get(selector)
        if found is None:
            return None
        entry = found
    types = [str(i["type"]) for i in entry.get("inputs", [])]
    names = tuple(str(i.get("name", "")) for i in entry.get("inputs", []))
    try:
        values = abi_decode(types, payload, strict=True)
    except (DecodingError, ValueError):
        return None
    args = tuple(
        to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
    )
    return RegistryRevert(name=str(entry["name"]), args=args, arg_names=names, data=raw)


def _to_bytes(value: bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    text = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _as_bytes32(value: bytes | str, what: str) -> bytes:
    raw = _to_bytes(value) if isinstance(value, str) else value
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


def _json_rpc_body(response: requests.Response | None) -> Mapping[str, Any] | None:
    """The JSON-RPC error object in an HTTP error response's body, if there is one."""
    if response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, Mapping) and "error" in body else None


def _find_revert_data(error: Any) -> bytes | None:
    """Revert data from a JSON-RPC error object. Nodes put it in ``error.data`` as a hex string
    (anvil, Besu, geth) or nested one level deeper as ``error.data.data`` (Hardhat 2)."""
    for _ in range(3):
        if not isinstance(error, Mapping):
            return None
        data = error.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            raw = _to_bytes(data)
            return raw if len(raw) >= 4 or raw == b"" else None
        error = data
    return None


class ChainRpc:
    """The service's one JSON-RPC client: web3's HTTP provider with every failure mapped onto
    ChainError subclasses and reverts decoded (against ``abi`` if given, else only
    ``Error(string)``/``Panic``). RegistryClient speaks through one; the dev-chain helpers and
    start-up checks use one on its own. ``retries`` is the number of attempts on a failed
    connection (0: none, for a caller that polls on its own)."""

    def __init__(
        self,
        w3_or_rpc_url: Web3 | str,
        *,
        timeout: float = DEFAULT_RPC_TIMEOUT,
        retries: int = RPC_CONNECT_ATTEMPTS,
        abi: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if isinstance(w3_or_rpc_url, str):
            retry = ExceptionRetryConfiguration(
                errors=(requests.ConnectionError, requests.Timeout),
                retries=retries,
                backoff_factor=0.1,
            ) if retries else None
            self.w3 = Web3(HTTPProvider(w3_or_rpc_url, request_kwargs={"timeout": timeout},
                                        exception_retry_configuration=retry))
        else:
            self.w3 = w3_or_rpc_url
        self.abi = abi

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call; maps every failure onto ChainError subclasses."""
        response: Any
        try:
            response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
            raise ChainUnreachable(f"{method}: chain node unreachable: {exc}") from exc
        except requests.HTTPError as exc:
            # Some nodes send JSON-RPC errors (reverts included) with a non-200 status.
            response = _json_rpc_body(exc.response)
            if response is None:
                raise ChainBadResponse(f"{method}: HTTP error from chain node: {exc}") from exc
        except (ValueError, requests.RequestException) as exc:
            raise ChainBadResponse(f"{method}: unusable answer from chain node: {exc}") from exc
        if not isinstance(response, Mapping):
            raise ChainBadResponse(f"{method}: answer is not a JSON-RPC object")
        error = response.get("error")
        if error is not None:
            message = str(error.get("message", error)) if isinstance(error, Mapping) else str(error)
            data = _find_revert_data(error)
            if data is not None:
                revert = decode_revert(data, self.abi if self.abi is not None else ())
                raise ChainReverted(f"{method}: reverted: {_describe(revert, data)}", data, revert)
            rpc_code = error.get("code") if isinstance(error, Mapping) else None
            raise ChainRejected(f"{method}: {message}",
                                rpc_code if isinstance(rpc_code, int) else None)
        if "result" not in response:
            raise ChainBadResponse(f"{method}: JSON-RPC answer without result")
        return response["result"]

    def chain_id(self) -> int:
        return _quantity(self.rpc("eth_chainId", []), "eth_chainId")

    def has_code(self, address: str) -> bool:
        """Whether ``address`` holds contract code at the latest block."""
        code = self.rpc("eth_getCode", [to_checksum_address(address), "latest"])
        return isinstance(code, str) and code not in ("0x", "0x0", "")


def _quantity(value: Any, method: str) -> int:
    """A JSON-RPC hex quantity as an int; ChainBadResponse if it is not one."""
    try:
        return int(value, 16)
    except (TypeError, ValueError) as exc:
        raise ChainBadResponse(f"{method}: result {value!r} is not a quantity") from exc


# --------------------------------------------------------------------------- client


class RegistryClient:
    """Reads and writes one EvidenceRegistry as the account of ``private_key``; without a
    key (None) the client only reads (the public views' chain reads)."""

    def __init__(
        self,
        w3_or_rpc_url: Web3 | str,
        registry_address: str,
        private_key: str | bytes | None,
        *,
        artifact: Mapping[str, Any] | None = None,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT,
    ) -> None:
        self.abi: list[dict[str, Any]] = list((artifact or load_artifact())["abi"])
        self._rpc = ChainRpc(w3_or_rpc_url, timeout=rpc_timeout, abi=self.abi)
        self.w3 = self._rpc.w3
        self.address = to_checksum_address(registry_address)
        self._account = Account.from_key(private_key) if private_key is not None else None
        self.sender: str = self._account.address if self._account is not None else ""
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=self.abi)
        self._selectors = {
            str(e["name"]): bytes(function_abi_to_4byte_selector(cast(ABIFunction, e)))
            for e in self.abi if e.get("type") == "function"
        }
        self._inputs = {
            str(e["name"]): [str(i["type"]) for i in e.get("inputs", [])]
            for e in self.abi if e.get("type") == "function"
        }
        for required in ("anchor", "revoke", "anchorOf", "revocationOf", "batchCount"):
            if required not in self._selectors:
                raise ContractArtifactError(f"ABI has no function {required}")
        self._chain_id: int | None = None
        # The event topics are the spec's (verifier.chain, INTERFACE §2); an artifact whose
        # events differ is not this registry.
        for name, signature in (("Anchored", ANCHORED_EVENT_SIGNATURE),
                                ("Revoked", REVOKED_EVENT_SIGNATURE)):
            if _event_signature(self._event_abi(name)) != signature:
                raise ContractArtifactError(f"ABI event {name} is not {signature}")
        self.anchored_topic = _hex(ANCHORED_TOPIC)
        self.revoked_topic = _hex(REVOKED_TOPIC)

    # ----------------------------------------------------------- JSON-RPC plumbing

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call (:meth:`ChainRpc.rpc`, reverts decoded against the ABI)."""
        return self._rpc.rpc(method, params)

    def has_code(self, address: str | None = None) -> bool:
        """Whether a contract exists at ``address`` (default: the registry)."""
        return self._rpc.has_code(address or self.address)

    def call(self, data: str, block: str = "latest", sender: str | None = None) -> bytes:
        """Raw ``eth_call`` to the registry (as ``sender`` if given); raises ChainReverted."""
        tx = {"to": self.address, "data": data}
        if sender is not None:
            tx["from"] = sender
        result = self.rpc("eth_call", [tx, block])
        if not isinstance(result, str):
            raise ChainBadResponse("eth_call: result is not a hex string")
        return _to_bytes(result)

    def _view(self, fn_name: str, args: Sequence[Any], types: Sequence[str]) -> tuple[Any, ...]:
        raw = self.call(self._calldata(fn_name, self._inputs[fn_name], args))
        try:
            return tuple(abi_decode(list(types), raw, strict=True))
        except (DecodingError, ValueError) as exc:
            raise ChainBadResponse(
                f"{fn_name}: undecodable result {raw.hex()!r} (is {self.address} a registry?)"
            ) from exc

    def _event_abi(self, name: str) -> dict[str, Any]:
        for entry in self.abi:
            if entry.get("type") == "event" and entry.get("name") == name:
                return entry
        raise ContractArtifactError(f"ABI has no event {name}")

    # ----------------------------------------------------------- node facts

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._rpc.chain_id()
        return self._chain_id

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber", []), 16)

    def pending_nonce(self, address: str | None = None) -> int:
        return int(self.rpc("eth_getTransactionCount", [address or self.sender, "pending"]), 16)

    def fees(self) -> Fees:
        """Fee fields from the node: EIP-1559 (2 x base fee + tip) when the latest block has a
        base fee, else the node's legacy gas price."""
        block = self.rpc("eth_getBlockByNumber", ["latest", False])
        base_fee = block.get("baseFeePerGas") if isinstance(block, Mapping) else None
        if base_fee is None:
            return Fees(gas_price=int(self.rpc("eth_gasPrice", []), 16))
        tip = int(self.rpc("eth_maxPriorityFeePerGas", []), 16)
        return Fees(max_fee_per_gas=2 * int(base_fee, 16) + tip, max_priority_fee_per_gas=tip)

    # ----------------------------------------------------------- reads

    def batch_count(self) -> int:
        return int(self._view("batchCount", [], ["uint64"])[0])

    def anchor_of(self, root: bytes | str) -> AnchorInfo | None:
        """Where ``root`` was anchored, or None if it never was (the contract answers zeros)."""
        seq, leaf_count, timestamp, block_number = self._view(
            "anchorOf", [_as_bytes32(root, "root")], ["uint64", "uint64", "uint64", "uint64"]
        )
        if seq == 0:
            return None
        return AnchorInfo(seq, leaf_count, timestamp, block_number)

    def revocation_of(self, subject: bytes | str) -> RevocationInfo | None:
        subject_bytes = _as_bytes32(subject, "subject")
        reason, timestamp = self._view("revocationOf", [subject_bytes], ["bytes32", "uint64"])
        if timestamp == 0:
            return None
        return RevocationInfo(subject_bytes, bytes(reason), int(timestamp))

    def has_role(self, role_name: str, account: str) -> bool:
        role = ROLE_IDS.get(role_name) or keccak(text=role_name)
        return bool(self._view("hasRole", [role, to_checksum_address(account)], ["bool"])[0])

    # ----------------------------------------------------------- writes

    def _sign(self, data: str, nonce: int, gas: int, fees: Fees | None) -> SignedTx:
        if self._account is None:
            raise ChainRejected("a read-only registry client has no key to sign with")
        tx: dict[str, Any] = {
            "chainId": self.chain_id(),
            "nonce": nonce,
            "to": self.address,
            "value": 0,
            "gas": gas,
            "data": data,
            **(fees or self.fees()).as_tx_fields(),
        }
        signed = self._account.sign_transaction(tx)
        return SignedTx(raw=bytes(signed.raw_transaction), hash=_hex(bytes(signed.hash)))

    def _calldata(self, fn_name: str, types: Sequence[str], args: Sequence[Any]) -> str:
        """ABI-encoded call (precomputed selector + eth_abi; web3's encode_abi costs ~3 ms)."""
        try:
            encoded = abi_encode(list(types), list(args))
        except EncodingError as exc:
            raise ValueError(f"{fn_name}: invalid arguments {args!r}: {exc}") from exc
        return _hex(self._selectors[fn_name] + encoded)

    def anchor_calldata(self, seq: int, root: bytes | str, leaf_count: int) -> str:
        return self._calldata("anchor", ["uint64", "bytes32", "uint64"],
                              [seq, _as_bytes32(root, "root"), leaf_count])

    def build_anchor_tx(
        self, seq: int, root: bytes | str, leaf_count: int, nonce: int, *, fees: Fees | None = None
    ) -> SignedTx:
        """A signed ``anchor(seq, root, leafCount)`` transaction, not sent. Fee fields come from
        the node unless ``fees`` is given (pass one Fees to many calls to save round trips)."""
        return self._sign(self.anchor_calldata(seq, root, leaf_count), nonce, ANCHOR_GAS_LIMIT,
                          fees)

    def preflight_anchor(self, seq: int, root: bytes | str, leaf_count: int) -> None:
        """Simulate ``anchor`` with eth_call as this account; raises ChainReverted (decoded)
        if it would revert, e.g. EvidenceRegistryDuplicateRoot for an already mined retry."""
        self.call(self.anchor_calldata(seq, root, leaf_count), sender=self.sender)

    def send_raw(self, raw: bytes) -> str:
        """Broadcast a signed transaction; returns its 0x-prefixed hash."""
        result = self.rpc("eth_sendRawTransaction", [_hex(raw)])
        if not isinstance(result, str):
            raise ChainBadResponse("eth_sendRawTransaction: result is not a hash")
        return result.lower()

    def get_receipt(self, tx_hash: str) -> TxReceipt | None:
        raw = self.rpc("eth_getTransactionReceipt", [tx_hash])
        if raw is None:
            return None
        if not isinstance(raw, Mapping) or raw.get("blockNumber") is None:
            return None
        return TxReceipt(
            tx_hash=str(raw["transactionHash"]).lower(),
            block_number=int(raw["blockNumber"], 16),
            block_hash=str(raw["blockHash"]).lower(),
            status=int(raw.get("status", "0x1"), 16),
            gas_used=int(raw["gasUsed"], 16),
            contract_address=(to_checksum_address(raw["contractAddress"])
                              if raw.get("contractAddress") else None),
            logs=tuple(raw.get("logs") or ()),
        )

    def confirmed(self, block_number: int, confirmations: int) -> bool:
        """:func:`is_confirmed` against the node's current block (no call when 0)."""
        return confirmations == 0 or is_confirmed(block_number, self.block_number(),
                                                  confirmations)

    def wait_mined(
        self,
        tx_hash: str,
        *,
        timeout: float = DEFAULT_RECEIPT_TIMEOUT,
        confirmations: int = 0,
        on_poll: Callable[[], None] | None = None,
        what: str = "transaction",
    ) -> TxReceipt:
        """The one receipt wait: poll until ``tx_hash`` is mined and ``confirmations`` blocks
        are on top of its block (see :func:`is_confirmed`), and return its receipt. A failed
        transaction (status 0) is returned as soon as it is mined, the caller decides what it
        means. ``on_poll`` runs after every receipt poll (the worker's crash injection).
        Raises ChainTimeout after ``timeout`` seconds; ``what`` names the transaction there."""
        deadline = time.monotonic() + timeout
        delay = RECEIPT_POLL_FIRST
        while True:
            receipt = self.get_receipt(tx_hash)
            if on_poll is not None:
                on_poll()
            if receipt is not None and (
                receipt.status != 1 or self.confirmed(receipt.block_number, confirmations)
            ):
                return receipt
            if time.monotonic() >= deadline:
                state = "not mined" if receipt is None else f"not {confirmations} blocks deep"
                raise ChainTimeout(f"{what} {tx_hash} {state} after {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 2, RECEIPT_POLL_MAX)

    def wait_receipt(
        self, tx_hash: str, timeout: float = DEFAULT_RECEIPT_TIMEOUT, confirmations: int = 0
    ) -> TxReceipt:
        """:meth:`wait_mined`, raising ChainReverted (with the replayed revert decoded) for a
        failed transaction. ``confirmations`` counts blocks after the transaction's own."""
        receipt = self.wait_mined(tx_hash, timeout=timeout, confirmations=confirmations)
        if receipt.status != 1:
            raise self._reverted_receipt(receipt)
        return receipt

    def _reverted_receipt(self, receipt: TxReceipt) -> ChainReverted:
        """Replay a failed transaction with eth_call on the parent state to get revert data."""
        data = b""
        try:
            tx = self.rpc("eth_getTransactionByHash", [receipt.tx_hash])
            if isinstance(tx, Mapping) and tx.get("to"):
                self.call(str(tx["input"]), hex(receipt.block_number - 1), sender=str(tx["from"]))
        except ChainReverted as exc:
            data = exc.data
        except ChainError:
            pass
        revert = decode_revert(data, self.abi)
        return ChainReverted(
            f"transaction {receipt.tx_hash} reverted in block {receipt.block_number}: "
            f"{_describe(revert, data)}",
            data,
            revert,
            receipt,
        )

    def revoke_calldata(self, subject: bytes | str, reason: bytes | str) -> str:
        return self._calldata("revoke", ["bytes32", "bytes32"],
                              [_as_bytes32(subject, "subject"), _as_bytes32(reason, "reason")])

    def build_revoke_tx(
        self, subject: bytes | str, reason: bytes | str, nonce: int, *, fees: Fees | None = None
    ) -> SignedTx:
        """A signed ``revoke(subject, reason)`` transaction, not sent."""
        return self._sign(self.revoke_calldata(subject, reason), nonce, REVOKE_GAS_LIMIT, fees)

    def revoke(
        self, subject: bytes | str, reason: bytes | str, *,
        timeout: float = DEFAULT_RECEIPT_TIMEOUT, confirmations: int = 0,
    ) -> TxReceipt:
        """Revoke ``subject`` with ``reason``: simulate, sign, send, wait for the receipt.
        Raises ChainReverted (e.g. EvidenceRegistryAlreadyRevoked) without sending if the
        simulation reverts, or if the mined transaction failed."""
        self.call(self.revoke_calldata(subject, reason), sender=self.sender)
        signed = self.build_revoke_tx(subject, reason, self.pending_nonce())
        return self.wait_receipt(self.send_raw(signed.raw), timeout, confirmations)

    # ----------------------------------------------------------- logs

    def _logs(
        self, topics: Sequence[str], from_block: int, to_block: int
    ) -> list[Mapping[str, Any]]:
        """One ``eth_getLogs`` of the registry over blocks ``from_block..to_block``."""
        logs = self.rpc("eth_getLogs", [{
            "address": self.address,
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
            "topics": list(topics),
        }])
        if not isinstance(logs, list):
            raise ChainBadResponse("eth_getLogs: result is not a list")
        return [log for log in logs if isinstance(log, Mapping) and not log.get("removed")]

    def _windows(
        self, from_block: int, to_block: int | None, newest_first: bool, window: int
    ) -> Iterator[tuple[int, int]]:
        """Block ranges of at most ``window`` blocks covering ``from_block..to_block`` (head
        when None), oldest or newest first."""
        head = self.block_number() if to_block is None else to_block
        if from_block > head:
            return
        if newest_first:
            hi = head
            while hi >= from_block:
                lo = max(from_block, hi - window + 1)
                yield lo, hi
                hi = lo - 1
        else:
            lo = from_block
            while lo <= head:
                hi = min(head, lo + window - 1)
                yield lo, hi
                lo = hi + 1

    def find_anchor_tx(
        self, seq: int, root: bytes | str, from_block: int = 0, to_block: int | None = None,
        *, window: int = MAX_LOG_RANGE,
    ) -> AnchorTx | None:
        """The transaction whose ``Anchored`` event has this indexed seq and root, or None.
        Searches ``from_block..to_block`` (head when None) oldest first, in ``eth_getLogs``
        windows of at most ``window`` blocks (Besu refuses longer ranges). Pass the block
        ``anchorOf`` answers as ``from_block``: the log is then in the first window."""
        root32 = _as_bytes32(root, "root")
        topics = [self.anchored_topic, _hex(seq.to_bytes(32, "big")), _hex(root32)]
        for lo, hi in self._windows(from_block, to_block, False, window):
            for log in self._logs(topics, lo, hi):
                try:
                    leaf_count, timestamp = abi_decode(
                        ["uint64", "uint64"], _to_bytes(log["data"]), strict=True
                    )
                except (DecodingError, ValueError, KeyError):
                    continue
                return AnchorTx(
                    tx_hash=str(log["transactionHash"]).lower(),
                    block_number=int(log["blockNumber"], 16),
                    seq=seq,
                    root=root32,
                    leaf_count=int(leaf_count),
                    timestamp=int(timestamp),
                )
        return None

    def find_revoke_tx(
        self, subject: bytes | str, from_block: int = 0, to_block: int | None = None,
        *, window: int = MAX_LOG_RANGE,
    ) -> RevokeTx | None:
        """The transaction whose ``Revoked`` event has this indexed subject, or None.
        Searches newest first (a revocation being recovered is recent), in windows of at
        most ``window`` blocks."""
        subject32 = _as_bytes32(subject, "subject")
        topics = [self.revoked_topic, _hex(subject32)]
        for lo, hi in self._windows(from_block, to_block, True, window):
            for log in self._logs(topics, lo, hi):
                try:
                    reason, timestamp = abi_decode(
                        ["bytes32", "uint64"], _to_bytes(log["data"]), strict=True
                    )
                except (DecodingError, ValueError, KeyError):
                    continue
                return RevokeTx(
                    tx_hash=str(log["transactionHash"]).lower(),
                    block_number=int(log["blockNumber"], 16),
                    subject=subject32,
                    reason=bytes(reason),
                    timestamp=int(timestamp),
                )
        return None

    def decode_revert(self, data: bytes | str | None) -> RegistryRevert | None:
        return decode_revert(data, self.abi)


def _event_signature(entry: Mapping[str, Any]) -> str:
    return f"{entry['name']}({','.join(str(i['type']) for i in entry['inputs'])})"


def _describe(revert: RegistryRevert | None, data: bytes) -> str:
    if revert is None:
        return f"undecoded revert data 0x{data.hex()}" if data else "no revert data"
    shown = ", ".join(
        _hex(a) if isinstance(a, bytes) else repr(a) for a in revert.args
    )
    return f"{revert.name}({shown})"
