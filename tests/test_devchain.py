"""service.anchoring.devchain: nodes start on loopback, stop kills the real PID, anvil persists."""

from __future__ import annotations

import os
from pathlib import Path

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
