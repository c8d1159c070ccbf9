"""What a public view reads from the chain, cached (anchors, receipts, revocations)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verifier.chain import RpcClient, report_subject
from verifier.errors import ChainError
from verifier.models import AnchorInfo, Receipt, RevocationInfo

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
]


@dataclass(frozen=True)
class BatchChainData:
    node_chain_id: int
    anchor: AnchorInfo | None
    receipt: Receipt | None


class ChainReader:
    """The reads a view needs from the chain, cached: anchors are immutable once confirmed,
    revocations are reread after `revocation_ttl` seconds. Network trouble raises ChainError;
    after a failure the node is not asked again for CHAIN_RETRY_S seconds."""

    def __init__(
        self,
        rpc_url: str,
        registry: str,
        chain_id: int | None,
        *,
        revocation_ttl: float = REVOCATION_TTL_S,
        timeout: float = CHAIN_TIMEOUT_S,
    ) -> None:
        self.rpc = RpcClient(rpc_url, timeout=timeout)
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
        except ChainError as exc:
            if exc.unreachable:
                self._down_until = time.monotonic() + CHAIN_RETRY_S
            raise

    def node_chain_id(self) -> int:
        if self._node_chain_id is None:
            self._node_chain_id = int(self._guard(self.rpc.chain_id))
        return self._node_chain_id

    def batch_data(self, root: str, tx_hash: str) -> BatchChainData:
        key = (root, tx_hash)
        cached = self._batches.get(key)
        if cached is not None:
            return cached
        node_chain_id = self.node_chain_id()
        anchor = self._guard(lambda: self.rpc.anchor_of(self.registry, bytes.fromhex(root)))
        receipt = self._guard(lambda: self.rpc.get_transaction_receipt(tx_hash))
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
            lambda: self.rpc.revocation_of(self.registry, report_subject(code))
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
        count = int(self._guard(lambda: self.rpc.batch_count(self.registry)))
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
