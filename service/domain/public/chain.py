"""What a public view reads from the chain, cached.

The reads go through the service's one JSON-RPC client, the anchoring side's
`RegistryClient` (web3's HTTP provider, keep-alive), built without a key: it only reads.
Its answers are handed over as the verifier's models and its failures as the verifier's
`ChainError` (code `chain_unreachable` when the node could not be reached), because the
checks a view makes with them are the verifier's own (`verifier.proof.evaluate_proof`).
web3 is imported only when a reader is built (a process without a chain never loads it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.domain.codes import revocation_subject
from verifier.chain import parse_receipt
from verifier.errors import ChainError
from verifier.models import AnchorInfo, Receipt, RevocationInfo

if TYPE_CHECKING:
    from service.anchoring.contract import RegistryClient

#: Seconds a revocation read from the contract is reused (never longer).
REVOCATION_TTL_S = 3.0
#: Seconds an unreachable chain is not asked again (views answer from what is cached).
CHAIN_RETRY_S = 5.0
#: Timeout of one JSON-RPC read made while answering a public request.
CHAIN_TIMEOUT_S = 3.0

__all__ = [
    "CHAIN_RETRY_S",
    "CHAIN_TIMEOUT_S",
    "REVOCATION_TTL_S",
    "BatchChainData",
    "ChainError",
    "ChainReader",
    "read_only_client",
]


@dataclass(frozen=True)
class BatchChainData:
    node_chain_id: int
    anchor: AnchorInfo | None
    receipt: Receipt | None


def read_only_client(rpc_url: str, registry: str, *, timeout: float) -> RegistryClient:
    """A keyless registry client whose reads fail fast: one attempt per read (a public
    request does not wait out retries), `timeout` seconds each."""
    from web3 import Web3
    from web3.providers import HTTPProvider

    from service.anchoring.contract import RegistryClient

    provider = HTTPProvider(
        rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
    )
    return RegistryClient(Web3(provider), registry, None)


class ChainReader:
    """The reads a view needs from the chain, cached: anchors are immutable once confirmed,
    revocations are reread after `revocation_ttl` seconds. Network trouble raises
    ChainError (verifier.errors); after the node proved unreachable it is not asked again
    for CHAIN_RETRY_S seconds."""

    def __init__(
        self,
        rpc_url: str,
        registry: str,
        chain_id: int | None,
        *,
        revocation_ttl: float = REVOCATION_TTL_S,
        timeout: float = CHAIN_TIMEOUT_S,
        client: RegistryClient | None = None,
    ) -> None:
        from service.anchoring import contract

        self.client = client or read_only_client(rpc_url, registry, timeout=timeout)
        self._client_error: type[contract.ChainError] = contract.ChainError
        self._unreachable: type[contract.ChainError] = contract.ChainUnreachable
        self.registry = registry
        self.chain_id = chain_id
        self.revocation_ttl = revocation_ttl
        self._node_chain_id: int | None = None
        self._batches: dict[tuple[str, str], BatchChainData] = {}
        self._revocations: dict[str, tuple[float, RevocationInfo | None]] = {}
        self._batch_count: tuple[float, int] | None = None
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _guard(self, fn: Callable[[], Any]) -> Any:
        if time.monotonic() < self._down_until:
            raise ChainError("chain endpoint recently unreachable", code="chain_unreachable")
        try:
            return fn()
        except self._client_error as exc:
            unreachable = isinstance(exc, self._unreachable)
            if unreachable:
                self._down_until = time.monotonic() + CHAIN_RETRY_S
            code = "chain_unreachable" if unreachable else exc.code
            raise ChainError(exc.message, code=code) from exc

    def node_chain_id(self) -> int:
        if self._node_chain_id is None:
            self._node_chain_id = int(self._guard(self.client.chain_id))
        return self._node_chain_id

    def _receipt(self, tx_hash: str) -> Receipt | None:
        raw = self.client.rpc("eth_getTransactionReceipt", [tx_hash])
        return parse_receipt(raw) if raw is not None else None

    def batch_data(self, root: str, tx_hash: str) -> BatchChainData:
        key = (root, tx_hash)
        cached = self._batches.get(key)
        if cached is not None:
            return cached
        node_chain_id = self.node_chain_id()
        anchor = self._guard(lambda: self.client.anchor_of(bytes.fromhex(root)))
        receipt = self._guard(lambda: self._receipt(tx_hash))
        data = BatchChainData(node_chain_id, anchor, receipt)
        if anchor is not None and receipt is not None:
            self._batches[key] = data  # confirmed anchors never change; misses are re-read
        return data

    def revocation(self, code: str, max_age: float | None = None) -> RevocationInfo | None:
        """The revocation of `code`, re-read when the cached one is older than `max_age`
        (default: the TTL)."""
        now = time.monotonic()
        cached = self._revocations.get(code)
        limit = self.revocation_ttl if max_age is None else min(max_age, self.revocation_ttl)
        if cached is not None and now - cached[0] < limit:
            return cached[1]
        info: RevocationInfo | None = self._guard(
            lambda: self.client.revocation_of(revocation_subject(code))
        )
        self._revocations[code] = (now, info)
        return info

    def batch_count(self) -> int:
        """The registry's `batchCount()`, re-read once it is older than the revocation TTL.
        Read only when a view has a record that looks pending (never on a genuine view)."""
        now = time.monotonic()
        cached = self._batch_count
        if cached is not None and now - cached[0] < self.revocation_ttl:
            return cached[1]
        count = int(self._guard(self.client.batch_count))
        self._batch_count = (now, count)
        return count

    def revocation_read_at(self, code: str) -> float | None:
        """When the revocation of `code` now in the cache was read (monotonic), if any."""
        cached = self._revocations.get(code)
        return cached[0] if cached is not None else None

    def revocation_fresh(self, code: str, read_at: float | None, now: float) -> bool:
        """Whether the cached revocation of `code` is still the one read at `read_at` and
        younger than the TTL (no chain call)."""
        cached = self._revocations.get(code)
        return (
            read_at is not None
            and cached is not None
            and cached[0] == read_at
            and now - read_at < self.revocation_ttl
        )

    def forget(self) -> None:
        self._batches.clear()
        self._revocations.clear()
        self._batch_count = None
