"""The chain the service anchors to, as one value (INTERFACE §6 `jianzheng chain info`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChainInfo:
    rpc_url: str
    chain_id: int
    registry: str

    def as_json(self) -> dict[str, Any]:
        return {"rpc_url": self.rpc_url, "chain_id": self.chain_id, "registry": self.registry}
