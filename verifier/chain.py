"""A minimal JSON-RPC client for the reads the verifier needs, over urllib.

The registry calls are encoded here from the function signatures of INTERFACE.md §2 (no
ABI file is read): a 4-byte selector from Keccak-256 of the signature, arguments and
results in the Solidity ABI (eth-abi). Network trouble raises ``ChainError``; the proof and
bundle verifiers turn that into a failed ``chain_unreachable`` check.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, Protocol

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak

from verifier.errors import ChainError
from verifier.models import AnchorInfo, Block, Log, Receipt, RevocationInfo

#: Seconds to wait for a node before giving up on a request.
DEFAULT_TIMEOUT = 10.0
#: Largest JSON-RPC answer read, in bytes (a receipt or a page of logs is far smaller).
MAX_RPC_RESPONSE_BYTES = 16 * 1024 * 1024

ANCHOR_OF_SIGNATURE = "anchorOf(bytes32)"
REVOCATION_OF_SIGNATURE = "revocationOf(bytes32)"
BATCH_COUNT_SIGNATURE = "batchCount()"
ANCHORED_EVENT_SIGNATURE = "Anchored(uint64,bytes32,uint64,uint64)"
REVOKED_EVENT_SIGNATURE = "Revoked(bytes32,bytes32,uint64)"
REPORT_SUBJECT_PREFIX = b"jianzheng/report-code/"

_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HEX_RE = re.compile(r"^0x[0-9a-fA-F]*$")
_CODE_RE = re.compile(r"^[0-9A-Z]+$")
MAX_CODE_LENGTH = 64


def selector(signature: str) -> bytes:
    """The 4-byte function selector of a Solidity signature such as ``batchCount()``."""
    return keccak(signature.encode("ascii"))[:4]


def event_topic(signature: str) -> bytes:
    """topic[0] of a non-anonymous event: Keccak-256 of its signature."""
    return keccak(signature.encode("ascii"))


ANCHOR_OF_SELECTOR = selector(ANCHOR_OF_SIGNATURE)
REVOCATION_OF_SELECTOR = selector(REVOCATION_OF_SIGNATURE)
BATCH_COUNT_SELECTOR = selector(BATCH_COUNT_SIGNATURE)
ANCHORED_TOPIC = event_topic(ANCHORED_EVENT_SIGNATURE)
REVOKED_TOPIC = event_topic(REVOKED_EVENT_SIGNATURE)


def canonical_code(code: str) -> str:
    """A report code in canonical form: upper case, without ``-`` or spaces.

    Raises ValueError when what is left is empty, too long or not of ``0-9A-Z``.
    """
    cleaned = re.sub(r"[\s-]", "", code).upper()
    if not cleaned or len(cleaned) > MAX_CODE_LENGTH or not _CODE_RE.match(cleaned):
        raise ValueError(f"not a report code: {code!r}")
    return cleaned


def report_subject(code: str) -> bytes:
    """Revocation subject of a report: SHA-256("jianzheng/report-code/" || CODE)."""
    return hashlib.sha256(REPORT_SUBJECT_PREFIX + canonical_code(code).encode("ascii")).digest()


# --- ABI encoding and decoding (pure) -------------------------------------------------------


def encode_anchor_of(root: bytes) -> bytes:
    return ANCHOR_OF_SELECTOR + abi_encode(["bytes32"], [_bytes32(root)])


def encode_revocation_of(subject: bytes) -> bytes:
    return REVOCATION_OF_SELECTOR + abi_encode(["bytes32"], [_bytes32(subject)])


def decode_anchor_of(data: bytes) -> AnchorInfo | None:
    """Decode ``anchorOf`` results; None when the root was never anchored (seq == 0)."""
    seq, leaf_count, timestamp, block_number = _decode(
        ["uint64", "uint64", "uint64", "uint64"], data, ANCHOR_OF_SIGNATURE
    )
    if seq == 0:
        return None
    return AnchorInfo(
        seq=int(seq),
        leaf_count=int(leaf_count),
        timestamp=int(timestamp),
        block_number=int(block_number),
    )


def decode_revocation_of(subject: bytes, data: bytes) -> RevocationInfo | None:
    """Decode ``revocationOf`` results; None when not revoked (timestamp == 0)."""
    reason, timestamp = _decode(["bytes32", "uint64"], data, REVOCATION_OF_SIGNATURE)
    if timestamp == 0:
        return None
    return RevocationInfo(subject=subject, reason=bytes(reason), timestamp=int(timestamp))


def decode_anchored_log(log: Log) -> tuple[int, bytes, int, int] | None:
    """(seq, root, leaf_count, timestamp) of an ``Anchored`` log, None for any other log."""
    if len(log.topics) != 3 or log.topics[0] != ANCHORED_TOPIC:
        return None
    try:
        leaf_count, timestamp = abi_decode(["uint64", "uint64"], log.data)
        (seq,) = abi_decode(["uint64"], log.topics[1])
    except (DecodingError, ValueError, OverflowError):
        return None
    return int(seq), log.topics[2], int(leaf_count), int(timestamp)


def _decode(types: list[str], data: bytes, what: str) -> tuple[Any, ...]:
    if not data:
        raise ChainError(
            f"{what} returned no data: is there a registry contract at that address?",
            code="bad_registry_response",
        )
    try:
        return tuple(abi_decode(types, data))
    except (DecodingError, ValueError, OverflowError) as exc:
        raise ChainError(
            f"{what} returned data that does not decode as {tuple(types)}: {exc}",
            code="bad_registry_response",
        ) from exc


def _bytes32(value: bytes) -> bytes:
    if len(value) != 32:
        raise ValueError(f"expected 32 bytes, got {len(value)}")
    return value


# --- the client ------------------------------------------------------------------------------


class RpcClient:
    """Ethereum JSON-RPC over HTTP(S) with a timeout and bounded answers.

    Registry reads (``anchor_of``, ``revocation_of``, ``batch_count``) take the registry
    address explicitly: the caller decides which registry it trusts.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ChainError(f"RPC URL must be http(s)://host[:port]/..., not {url!r}",
                             code="bad_rpc_url")
        if timeout <= 0:
            raise ChainError("RPC timeout must be positive", code="bad_rpc_url")
        self.url = url
        self.timeout = timeout
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"RpcClient({self.url!r}, timeout={self.timeout})"

    # -- transport --

    def request(self, method: str, params: Sequence[Any]) -> Any:
        """Send one JSON-RPC request and return its ``result``."""
        request_id = next(self._ids)
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        ).encode("utf-8")
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read(MAX_RPC_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raw = exc.read(MAX_RPC_RESPONSE_BYTES + 1) if exc.fp is not None else b""
            if not _looks_like_rpc_error(raw):
                raise ChainError(
                    f"{self.url} answered HTTP {exc.code} to {method}", code="chain_unreachable"
                ) from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            reason = getattr(exc, "reason", exc)
            raise ChainError(
                f"cannot reach {self.url} ({method}): {reason}", code="chain_unreachable"
            ) from exc
        if len(raw) > MAX_RPC_RESPONSE_BYTES:
            raise ChainError(
                f"{method} answer exceeds {MAX_RPC_RESPONSE_BYTES} bytes", code="bad_rpc_response"
            )
        try:
            message = json.loads(raw)
        except ValueError as exc:
            raise ChainError(
                f"{self.url} did not answer JSON to {method}", code="bad_rpc_response"
            ) from exc
        if not isinstance(message, dict):
            raise ChainError(f"{method}: answer is not a JSON object", code="bad_rpc_response")
        error = message.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise ChainError(f"{method}: malformed error {error!r}", code="rpc_error")
            data = error.get("data")
            rpc_data = data if isinstance(data, str) else (
                json.dumps(data) if data is not None else None
            )
            rpc_code = error.get("code")
            raise ChainError(
                f"{method} failed: {error.get('message', 'unknown error')}",
                code="rpc_error",
                rpc_code=rpc_code if isinstance(rpc_code, int) else None,
                rpc_data=rpc_data,
            )
        if "result" not in message:
            raise ChainError(f"{method}: answer has no result", code="bad_rpc_response")
        return message["result"]

    # -- plain methods --

    def chain_id(self) -> int:
        """``eth_chainId``."""
        return _quantity(self.request("eth_chainId", []), "eth_chainId")

    def block_number(self) -> int:
        """``eth_blockNumber``."""
        return _quantity(self.request("eth_blockNumber", []), "eth_blockNumber")

    def call(self, to: str, data: bytes, block: str = "latest") -> bytes:
        """``eth_call`` of ``data`` on contract ``to``; the raw return data."""
        result = self.request(
            "eth_call", [{"to": _address(to), "data": "0x" + data.hex()}, block]
        )
        return _data(result, "eth_call")

    def get_transaction_receipt(self, tx_hash: str) -> Receipt | None:
        """``eth_getTransactionReceipt``; None when the node knows no such transaction."""
        result = self.request("eth_getTransactionReceipt", [tx_hash])
        if result is None:
            return None
        return parse_receipt(result)

    def get_block(self, number: int) -> Block | None:
        """``eth_getBlockByNumber`` (header only); None when there is no such block."""
        result = self.request("eth_getBlockByNumber", [hex(number), False])
        if result is None:
            return None
        if not isinstance(result, dict):
            raise ChainError("eth_getBlockByNumber: not an object", code="bad_rpc_response")
        block_hash = result.get("hash")
        if not isinstance(block_hash, str):
            raise ChainError("eth_getBlockByNumber: no hash", code="bad_rpc_response")
        return Block(
            number=_quantity(result.get("number"), "block.number"),
            hash=block_hash.lower(),
            timestamp=_quantity(result.get("timestamp"), "block.timestamp"),
        )

    def get_logs(
        self,
        address: str,
        topics: Sequence[bytes | None],
        from_block: int | str = 0,
        to_block: int | str = "latest",
    ) -> list[Log]:
        """``eth_getLogs`` for one contract; ``None`` in ``topics`` matches anything."""
        params = {
            "address": _address(address),
            "topics": [None if t is None else "0x" + t.hex() for t in topics],
            "fromBlock": hex(from_block) if isinstance(from_block, int) else from_block,
            "toBlock": hex(to_block) if isinstance(to_block, int) else to_block,
        }
        result = self.request("eth_getLogs", [params])
        if not isinstance(result, list):
            raise ChainError("eth_getLogs: not a list", code="bad_rpc_response")
        return [_parse_log(item) for item in result]

    # -- registry reads --

    def anchor_of(self, registry: str, root: bytes) -> AnchorInfo | None:
        """``anchorOf(root)`` on ``registry``; None when the root was never anchored."""
        return decode_anchor_of(self.call(registry, encode_anchor_of(root)))

    def revocation_of(self, registry: str, subject: bytes) -> RevocationInfo | None:
        """``revocationOf(subject)`` on ``registry``; None when not revoked."""
        return decode_revocation_of(subject, self.call(registry, encode_revocation_of(subject)))

    def batch_count(self, registry: str) -> int:
        """``batchCount()`` on ``registry``: the latest anchored sequence number."""
        (count,) = _decode(["uint64"], self.call(registry, BATCH_COUNT_SELECTOR), "batchCount")
        return int(count)


# --- answer parsing ----------------------------------------------------------------------------


def parse_receipt(result: Any) -> Receipt:
    """A typed receipt from the JSON object of ``eth_getTransactionReceipt``."""
    if not isinstance(result, dict):
        raise ChainError("receipt is not an object", code="bad_rpc_response")
    tx_hash = result.get("transactionHash")
    logs = result.get("logs")
    if not isinstance(tx_hash, str) or not isinstance(logs, list):
        raise ChainError("receipt lacks transactionHash or logs", code="bad_rpc_response")
    status = result.get("status")
    return Receipt(
        tx_hash=tx_hash.lower(),
        status=_quantity(status, "receipt.status") if status is not None else 1,
        block_number=_quantity(result.get("blockNumber"), "receipt.blockNumber"),
        logs=tuple(_parse_log(item) for item in logs),
    )


def _parse_log(item: Any) -> Log:
    if not isinstance(item, dict):
        raise ChainError("log is not an object", code="bad_rpc_response")
    address = item.get("address")
    topics = item.get("topics")
    if not isinstance(address, str) or not _ADDRESS_RE.match(address):
        raise ChainError("log has no valid address", code="bad_rpc_response")
    if not isinstance(topics, list):
        raise ChainError("log has no topics", code="bad_rpc_response")
    return Log(
        address=address.lower(),
        topics=tuple(_data(t, "log.topic") for t in topics),
        data=_data(item.get("data", "0x"), "log.data"),
    )


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 66:
        raise ChainError(f"{what}: not a hex quantity: {value!r}", code="bad_rpc_response")
    try:
        return int(value, 16)
    except ValueError as exc:
        raise ChainError(f"{what}: not a hex quantity: {value!r}",
                         code="bad_rpc_response") from exc


def _data(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.match(value) or len(value) % 2:
        raise ChainError(f"{what}: not hex data", code="bad_rpc_response")
    return bytes.fromhex(value[2:])


def _address(value: str) -> str:
    if not _ADDRESS_RE.match(value):
        raise ValueError(f"not an address: {value!r}")
    return value.lower()


def _looks_like_rpc_error(raw: bytes) -> bool:
    try:
        message = json.loads(raw)
    except ValueError:
        return False
    return isinstance(message, dict) and "error" in message


# --- chain sources -------------------------------------------------------------------------------


class ChainSource(Protocol):
    """What the proof and bundle verifiers read from a chain (RpcClient implements it)."""

    def chain_id(self) -> int: ...

    def anchor_of(self, registry: str, root: bytes) -> AnchorInfo | None: ...

    def revocation_of(self, registry: str, subject: bytes) -> RevocationInfo | None: ...

    def get_transaction_receipt(self, tx_hash: str) -> Receipt | None: ...


class BundleChainSource(ChainSource, Protocol):
    """What bundle verification reads: a ChainSource plus ``batchCount`` for the
    batch-sequence check (RpcClient and CachingChain implement it)."""

    def batch_count(self, registry: str) -> int: ...


class CachingChain:
    """Wraps a BundleChainSource: each distinct read is made once (a bundle's proofs share
    batches), and once the node proved unreachable every later read fails at once instead of
    waiting for another timeout. ``batch_count`` is read anew each time (it grows)."""

    def __init__(self, source: BundleChainSource) -> None:
        self.source = source
        self._chain_id: int | None = None
        self._anchors: dict[tuple[str, bytes], AnchorInfo | None] = {}
        self._revocations: dict[tuple[str, bytes], RevocationInfo | None] = {}
        self._receipts: dict[str, Receipt | None] = {}
        self._down: ChainError | None = None

    def _guard(self) -> None:
        if self._down is not None:
            raise ChainError(self._down.message, code=self._down.code)

    def _note(self, exc: ChainError) -> None:
        if exc.unreachable:
            self._down = exc

    def chain_id(self) -> int:
        self._guard()
        if self._chain_id is None:
            try:
                self._chain_id = self.source.chain_id()
            except ChainError as exc:
                self._note(exc)
                raise
        return self._chain_id

    def anchor_of(self, registry: str, root: bytes) -> AnchorInfo | None:
        self._guard()
        key = (registry.lower(), root)
        if key not in self._anchors:
            try:
                self._anchors[key] = self.source.anchor_of(registry, root)
            except ChainError as exc:
                self._note(exc)
                raise
        return self._anchors[key]

    def revocation_of(self, registry: str, subject: bytes) -> RevocationInfo | None:
        self._guard()
        key = (registry.lower(), subject)
        if key not in self._revocations:
            try:
                self._revocations[key] = self.source.revocation_of(registry, subject)
            except ChainError as exc:
                self._note(exc)
                raise
        return self._revocations[key]

    def get_transaction_receipt(self, tx_hash: str) -> Receipt | None:
        self._guard()
        key = tx_hash.lower()
        if key not in self._receipts:
            try:
                self._receipts[key] = self.source.get_transaction_receipt(tx_hash)
            except ChainError as exc:
                self._note(exc)
                raise
        return self._receipts[key]

    def batch_count(self, registry: str) -> int:
        self._guard()
        try:
            return self.source.batch_count(registry)
        except ChainError as exc:
            self._note(exc)
            raise
