"""service.anchoring.devchain: nodes start on loopback, stop kills the real PID, anvil persists."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from service.anchoring.contract import RegistryClient
from service.anchoring.devchain import (
    DEPLOYER,
    DEV_ACCOUNTS,
    SERVICE_ACCOUNT,
    DevChainError,
    deploy_registry,
    free_port,
    rpc_chain_id,
    start_anvil,
    start_hardhat,
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def _answering(body: bytes) -> Iterator[str]:
    """An HTTP server on loopback that answers every POST with `body`; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_rpc_chain_id_reads_the_id_and_nothing_else() -> None:
    """rpc_chain_id speaks through the service's one JSON-RPC client (ChainRpc)."""
    with _answering(b'{"jsonrpc": "2.0", "id": 0, "result": "0x7a69"}') as url:
        assert rpc_chain_id(url, timeout=1.0) == 31337
    for junk in (b"<html>not a node</html>", b'{"jsonrpc": "2.0", "id": 0, "result": "zz"}',
                 b'{"jsonrpc": "2.0", "id": 0, "error": {"code": -32601, "message": "no"}}'):
        with _answering(junk) as url:
            assert rpc_chain_id(url, timeout=1.0) is None
    assert rpc_chain_id(f"http://127.0.0.1:{free_port()}", timeout=1.0) is None


def test_dev_accounts_match_their_keys() -> None:
    assert len(DEV_ACCOUNTS) == 4
    for account in DEV_ACCOUNTS:
        assert Account.from_key(account.private_key).address == account.address
    assert (DEPLOYER, SERVICE_ACCOUNT) == DEV_ACCOUNTS[:2]


@pytest.mark.chain
def test_hardhat_stop_kills_the_node() -> None:
    port = free_port()
    with start_hardhat(port) as node:
        assert node.rpc_url == f"http://127.0.0.1:{port}"
        assert node.chain_id == 31337
        pid = node.pid
        assert pid is not None and _pid_alive(pid)
        # A second node on the same port fails cleanly instead of hanging.
        with pytest.raises(DevChainError):
            start_hardhat(port)
    assert not _pid_alive(pid)
    assert rpc_chain_id(node.rpc_url, timeout=1.0) is None


@pytest.mark.chain
def test_anvil_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "chain" / "state.json"
    root = b"\x11" * 32
    with start_anvil(state_file=state) as node:
        pid = node.pid
        registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, SERVICE_ACCOUNT.address)
        client = RegistryClient(node.rpc_url, registry, SERVICE_ACCOUNT.private_key)
        signed = client.build_anchor_tx(1, root, 4, client.pending_nonce())
        client.wait_receipt(client.send_raw(signed.raw))
    assert pid is not None and not _pid_alive(pid)
    assert state.is_file()
    with start_anvil(state_file=state) as node:
        client = RegistryClient(node.rpc_url, registry, SERVICE_ACCOUNT.private_key)
        assert client.batch_count() == 1
        info = client.anchor_of(root)
        assert info is not None and (info.seq, info.leaf_count) == (1, 4)
