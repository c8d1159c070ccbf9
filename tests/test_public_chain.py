"""The public views' chain reader when the node is down: the service's one JSON-RPC client
(the anchoring side's RegistryClient, keyless) fails fast, is not asked again for a while,
and its failures reach the checks as the verifier's ChainError."""

from __future__ import annotations

import socket

import pytest

from service.anchoring.contract import ChainRejected
from service.domain.codes import generate_code
from service.domain.public.chain import CHAIN_RETRY_S, ChainReader, read_only_client
from verifier.errors import ChainError

REGISTRY = "0x" + "11" * 20


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_node_fails_fast_and_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = ChainReader(f"http://127.0.0.1:{_closed_port()}", REGISTRY, 31337, timeout=1.0)
    with pytest.raises(ChainError) as first:
        reader.batch_data("ab" * 32, "0x" + "cd" * 32)
    assert first.value.unreachable
    calls: list[str] = []
    monkeypatch.setattr(reader.client, "rpc", lambda method, params: calls.append(method))
    with pytest.raises(ChainError) as again:
        reader.revocation(generate_code("440300", 2026).canonical)
    assert again.value.unreachable and "recently unreachable" in again.value.message
    assert calls == []  # not asked again within CHAIN_RETRY_S
    assert CHAIN_RETRY_S > 0


def test_the_read_client_has_no_key() -> None:
    client = read_only_client("http://127.0.0.1:8545", REGISTRY, timeout=1.0)
    assert client.sender == ""
    with pytest.raises(ChainRejected):
        client.build_revoke_tx(b"\0" * 32, b"\0" * 32, nonce=0)
