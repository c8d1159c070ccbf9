"""The dev chain reorganised, and killed with kill -9, under anchoring (issue 11).

- `anvil_reorg` drops the blocks holding the newest anchors: the worker notices (CRITICAL
  log, `jianzheng_anchor_reorgs_total`), sets those batches back to `prepared` and anchors
  them again; every proof served afterwards names a transaction the chain has and
  verifies. Before the fix the worker halted for good.
- anvil persisting its chain (`--state`, saved every second, as `jianzheng serve` runs it)
  is killed with SIGKILL mid-stream and started again from its file, which lacks the last
  moments: whatever anchors the restart lost are anchored again, nothing is doubled.
- anvil killed and started empty (its state gone): the worker halts with
  `jianzheng_anchor_halted` 1 and /healthz `degraded`, and sends nothing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.contract import RegistryClient
from service.anchoring.devchain import (
    DEPLOYER,
    SERVICE_ACCOUNT,
    NodeProcess,
    deploy_registry,
    free_port,
    start_anvil,
)
from service.anchoring.worker import AnchorWorker, WorkerThread
from service.app import create_app
from service.domain.proofs import build_proof
from service.state import ServiceState, build_state
from service.storage.models import Batch
from tests.anchoring_support import (
    assert_exactly_once,
    drained,
    ingest,
    prometheus_values,
    wait_for,
)
from tests.fixtures.chain import AnvilChain
from tests.fixtures.db import make_settings
from verifier.chain import CachingChain, RpcClient
from verifier.proof import Pins, parse_proof, verify_proof

pytestmark = [pytest.mark.chain]


def _state(tmp_path: Path, chain: ChainInfo) -> ServiceState:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'jz.db'}",
        chain={"rpc_url": chain.rpc_url, "chain_id": chain.chain_id, "registry": chain.registry,
               "receipt_timeout_s": 3.0},
        anchor={"batch_max_leaves": 10, "batch_max_age_s": 0.05, "poll_interval_s": 0.05,
                "retry_initial_s": 0.1, "retry_max_s": 0.5, "run_in_serve": False},
    )
    return build_state(settings, chain=chain)


def _batches(state: ServiceState) -> list[Any]:
    with state.engine.connect() as conn:
        return list(conn.execute(
            select(Batch.seq, Batch.tx_hash, Batch.block_number, Batch.status)
            .order_by(Batch.seq)
        ).all())


def _all_proofs_verify(state: ServiceState, chain: ChainInfo, ids: list[str]) -> None:
    """Every record's proof, as the service builds it, names a transaction the chain has
    and verifies against the chain."""
    rpc = RegistryClient(chain.rpc_url, chain.registry, None)
    source = CachingChain(RpcClient(chain.rpc_url))
    pins = Pins(chain_id=chain.chain_id, registry=chain.registry)
    with state.sessions() as session:
        for rid in ids:
            doc = build_proof(session, rid, chain)
            assert doc is not None
            assert rpc.get_receipt(doc["anchor"]["tx_hash"]) is not None
            result = verify_proof(parse_proof(json.dumps(doc)), source, pins)
            assert result.bottom_line, result.findings


def test_a_reorg_dropping_anchors_is_noticed_and_they_are_anchored_again(
    tmp_path: Path, anvil: AnvilChain, caplog: pytest.LogCaptureFixture
) -> None:
    chain = ChainInfo(anvil.rpc_url, anvil.chain_id, anvil.registry)
    state = _state(tmp_path, chain)
    http = TestClient(create_app(state.settings, state=state))
    rpc = RegistryClient(anvil.rpc_url, anvil.registry, None)
    caplog.set_level(logging.INFO, logger="service.anchoring.worker")
    worker = WorkerThread(AnchorWorker(state.settings, state.engine, chain)).start()
    try:
        ids: list[str] = []
        for i in range(5):
            ids += ingest(state.sessions, 10, tag=f"r{i}")
            wait_for(lambda: drained(state.engine), 30, "a batch to be anchored")
        before = _batches(state)
        assert len(before) == 5 and rpc.batch_count() == 5
        # Drop the blocks of the two newest anchors (and everything after them).
        depth = rpc.block_number() - before[3].block_number + 1
        rpc.rpc("anvil_reorg", [depth, []])
        assert rpc.batch_count() == 3
        assert rpc.get_receipt(before[4].tx_hash) is None
        wait_for(
            lambda: prometheus_values(http.get("/metrics").text)[
                "jianzheng_anchor_reorgs_total"] >= 1,
            30, "the reorganisation to be noticed",
        )
        wait_for(lambda: drained(state.engine), 30, "the dropped batches to be anchored again")
        ids += ingest(state.sessions, 10, tag="after")
        wait_for(lambda: drained(state.engine), 30, "a new batch after the reorg")
    finally:
        worker.stop()
    after = _batches(state)
    assert [b.seq for b in after] == [1, 2, 3, 4, 5, 6]
    assert [b.tx_hash for b in after[:3]] == [b.tx_hash for b in before[:3]]
    # Anchored again in new blocks (the same signed bytes when nonce and fees repeat).
    assert all(a.block_number > b.block_number for a, b in zip(after[3:5], before[3:5],
                                                               strict=True))
    assert any(r.levelno == logging.CRITICAL and "CHAIN REORGANISATION" in r.message
               for r in caplog.records)
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["anchoring"]["halted"] is None
    assert assert_exactly_once(state.engine, rpc, ids) == 6
    _all_proofs_verify(state, chain, ids)
    state.close()


@pytest.fixture
def persistent_anvil(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    state_file = tmp_path / "chain" / "state.json"
    box: dict[str, Any] = {"port": port, "state_file": state_file,
                           "node": start_anvil(port, state_file)}
    try:
        box["registry"] = deploy_registry(box["node"].rpc_url, DEPLOYER.private_key,
                                          SERVICE_ACCOUNT.address)
        time.sleep(1.5)  # the deployment is in the state file
        yield box
    finally:
        box["node"].stop()


def _serving(
    tmp_path: Path, node: NodeProcess, registry: str
) -> tuple[ChainInfo, ServiceState, TestClient, WorkerThread]:
    assert node.chain_id is not None
    chain = ChainInfo(node.rpc_url, node.chain_id, registry)
    state = _state(tmp_path, chain)
    http = TestClient(create_app(state.settings, state=state))
    worker = WorkerThread(AnchorWorker(state.settings, state.engine, chain)).start()
    return chain, state, http, worker


def _sigkill(node: NodeProcess) -> None:
    assert node.pid is not None
    os.kill(node.pid, signal.SIGKILL)
    node.stop()  # reap it


def test_the_chain_killed_and_restarted_from_its_state_file(
    tmp_path: Path, persistent_anvil: dict[str, Any]
) -> None:
    box = persistent_anvil
    node: NodeProcess = box["node"]
    chain, state, http, worker = _serving(tmp_path, node, box["registry"])
    try:
        ids: list[str] = []
        for i in range(4):
            ids += ingest(state.sessions, 10, tag=f"k{i}")
            wait_for(lambda: drained(state.engine), 30, "a batch to be anchored")
        time.sleep(1.5)  # these are in the state file
        ids += ingest(state.sessions, 10, tag="last")
        time.sleep(0.3)  # the newest anchor is likely younger than the last state save
        _sigkill(node)
        ids += ingest(state.sessions, 20, tag="down")  # accepted while the chain is down
        time.sleep(1.0)
        node = box["node"] = start_anvil(box["port"], box["state_file"])
        wait_for(lambda: drained(state.engine), 60, "the backlog after the chain came back")
        ids += ingest(state.sessions, 10, tag="after")
        wait_for(lambda: drained(state.engine), 30, "a batch after the restart")
    finally:
        worker.stop()
    rpc = RegistryClient(node.rpc_url, chain.registry, None)
    health = http.get("/healthz").json()
    assert health["anchoring"]["halted"] is None, health
    k = assert_exactly_once(state.engine, rpc, ids)
    assert k == rpc.batch_count() >= 6
    _all_proofs_verify(state, chain, ids)
    state.close()


def test_the_chain_killed_and_started_empty_halts_anchoring(
    tmp_path: Path, persistent_anvil: dict[str, Any]
) -> None:
    box = persistent_anvil
    node: NodeProcess = box["node"]
    chain, state, http, worker = _serving(tmp_path, node, box["registry"])
    try:
        ingest(state.sessions, 20, tag="before")
        wait_for(lambda: drained(state.engine), 30, "the first batches")
        _sigkill(node)
        box["state_file"].unlink()
        node = box["node"] = start_anvil(box["port"], box["state_file"])
        ingest(state.sessions, 10, tag="after")
        wait_for(
            lambda: prometheus_values(http.get("/metrics").text)["jianzheng_anchor_halted"] == 1,
            30, "the halt",
        )
        health = http.get("/healthz").json()
        assert health["status"] == "degraded"
        assert "no contract at registry" in health["anchoring"]["halted"]
        time.sleep(1)
        assert RegistryClient(node.rpc_url, chain.registry, None).has_code() is False
        assert int(node_nonce(node.rpc_url), 16) == 0, "nothing was sent to the new chain"
    finally:
        worker.stop()
    state.close()


def node_nonce(rpc_url: str) -> str:
    rpc = RegistryClient(rpc_url, DEPLOYER.address, None)
    return str(rpc.rpc("eth_getTransactionCount", [SERVICE_ACCOUNT.address, "latest"]))
