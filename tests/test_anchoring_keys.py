"""Chain keys and fees (issue 11, finding 10), on real dev chains.

- Separate anchorer and revoker keys (`JZ_CHAIN__ANCHORER_KEY`, `JZ_CHAIN__REVOKER_KEY`),
  neither an admin: `/metrics` and `jianzheng chain info --roles` show which roles they
  hold; when the admin revokes ANCHORER_ROLE mid-run the worker stops sending, alerts
  (metric + CRITICAL log), and resumes once the role is granted again, without loss.
- A stuck anchor: a Hardhat node without automine whose blocks all carry a base fee far
  above the fee the anchor was signed with (a fee spike right after sending). The worker
  replaces it with the same nonce and bumped EIP-1559 fees once `receipt_timeout_s`
  passes. Without the replacement it re-broadcasts the same transaction ("Known
  transaction") forever.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.contract import ANCHORER_ROLE, RegistryClient, signed_tx_fees
from service.anchoring.devchain import DEV_ACCOUNTS, deploy_registry, start_hardhat
from service.anchoring.worker import AnchorWorker, WorkerThread
from service.app import create_app
from service.state import build_state
from service.storage.db import make_sessionmaker
from service.storage.models import Batch
from tests.anchoring_support import (
    REPO_ROOT,
    assert_exactly_once,
    drained,
    ingest,
    prometheus_values,
    registry_transact,
    wait_for,
)
from tests.fixtures.chain import AnvilChain
from tests.fixtures.db import make_settings

pytestmark = [pytest.mark.chain]

ANCHORER, REVOKER = DEV_ACCOUNTS[1], DEV_ACCOUNTS[2]
GWEI = 10**9


def _settings(tmp_path: Path, chain: ChainInfo, **chain_extra: object) -> object:
    return make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'jz.db'}",
        chain={"rpc_url": chain.rpc_url, "chain_id": chain.chain_id,
               "registry": chain.registry, **chain_extra},
        anchor={"batch_max_age_s": 0, "poll_interval_s": 0.05, "retry_initial_s": 0.1,
                "retry_max_s": 0.5, "run_in_serve": False},
    )


def test_separate_keys_roles_shown_and_a_lost_role_alerts(
    tmp_path: Path, anvil: AnvilChain, caplog: pytest.LogCaptureFixture
) -> None:
    registry = deploy_registry(anvil.rpc_url, anvil.deployer_key, ANCHORER.address,
                               revoker_address=REVOKER.address)
    chain = ChainInfo(anvil.rpc_url, anvil.chain_id, registry)
    settings = _settings(tmp_path, chain, anchorer_key=ANCHORER.private_key,
                         revoker_key=REVOKER.private_key)
    state = build_state(settings, chain=chain)  # type: ignore[arg-type]
    http = TestClient(create_app(state.settings, state=state))
    sessions = make_sessionmaker(state.engine)
    direct = RegistryClient(anvil.rpc_url, registry, None)

    def metrics() -> dict[str, float]:
        return prometheus_values(http.get("/metrics").text)

    worker = WorkerThread(AnchorWorker(state.settings, state.engine, chain)).start()
    caplog.set_level(logging.INFO, logger="service.anchoring.worker")
    try:
        ids = ingest(sessions, 10)
        wait_for(lambda: drained(state.engine), 30, "the first records to be anchored")
        m = metrics()
        assert m["jianzheng_chain_anchorer_has_role"] == 1
        assert m["jianzheng_chain_revoker_has_role"] == 1
        assert m["jianzheng_chain_key_is_admin"] == 0
        assert m["jianzheng_anchor_role_missing"] == 0

        # The admin takes ANCHORER_ROLE away mid-run: the worker alerts and sends nothing.
        registry_transact(anvil.rpc_url, registry, anvil.deployer_key, "revokeRole",
                          [ANCHORER_ROLE, ANCHORER.address])
        ids += ingest(sessions, 10, tag="while-revoked")
        wait_for(lambda: metrics()["jianzheng_anchor_role_missing"] == 1, 30, "the alert")
        assert metrics()["jianzheng_chain_anchorer_has_role"] == 0
        assert any(r.levelno == logging.CRITICAL and "does not hold ANCHORER_ROLE" in r.message
                   for r in caplog.records)
        assert http.get("/healthz").json()["anchoring"]["role_missing"]
        assert direct.batch_count() == 1
        assert not drained(state.engine)

        # Granted again: the backlog is anchored, the alert clears, nothing lost or doubled.
        registry_transact(anvil.rpc_url, registry, anvil.deployer_key, "grantRole",
                          [ANCHORER_ROLE, ANCHORER.address])
        wait_for(lambda: drained(state.engine), 30, "the backlog after the role came back")
        wait_for(lambda: metrics()["jianzheng_anchor_role_missing"] == 0, 15, "the all-clear")
    finally:
        worker.stop()
    assert assert_exactly_once(state.engine, direct, ids) == 2
    state.close()

    # The operator's view: which roles each configured key holds, read from the chain now.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JZ_")}
    env.update({
        "JZ_DATA_DIR": str(tmp_path / "cli"), "JZ_CHAIN__RPC_URL": anvil.rpc_url,
        "JZ_CHAIN__CHAIN_ID": str(anvil.chain_id), "JZ_CHAIN__REGISTRY": registry,
        "JZ_CHAIN__ANCHORER_KEY": ANCHORER.private_key,
        "JZ_CHAIN__REVOKER_KEY": anvil.deployer_key,  # wrong on purpose: the admin's key
    })
    out = subprocess.run([sys.executable, "-m", "service.cli", "chain", "info", "--roles"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    keys = json.loads(out.stdout)["keys"]
    assert keys["anchorer"] == {"address": ANCHORER.address, "DEFAULT_ADMIN_ROLE": False,
                                "ANCHORER_ROLE": True, "REVOKER_ROLE": False}
    assert keys["revoker"] == {"address": anvil.deployer_address, "DEFAULT_ADMIN_ROLE": True,
                               "ANCHORER_ROLE": False, "REVOKER_ROLE": False}


class FeeSpike:
    """Mines a block every 0.2 s on a node without automine, each with a base fee of
    `base_fee` wei (a congested network): a transaction signed for yesterday's fees waits."""

    def __init__(self, client: RegistryClient, base_fee: int) -> None:
        self.client = client
        self.base_fee = base_fee
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.client.rpc("hardhat_setNextBlockBaseFeePerGas", [hex(self.base_fee)])
            self.client.rpc("evm_mine", [])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def manual_hardhat() -> Iterator[ChainInfo]:
    node = start_hardhat()
    try:
        assert node.chain_id is not None
        registry = deploy_registry(node.rpc_url, DEV_ACCOUNTS[0].private_key, ANCHORER.address)
        RegistryClient(node.rpc_url, registry, None).rpc("evm_setAutomine", [False])
        yield ChainInfo(node.rpc_url, node.chain_id, registry)
    finally:
        node.stop()


def test_a_stuck_anchor_is_replaced_with_bumped_fees(
    tmp_path: Path, manual_hardhat: ChainInfo, caplog: pytest.LogCaptureFixture
) -> None:
    chain = manual_hardhat
    settings = _settings(tmp_path, chain, private_key=ANCHORER.private_key,
                         receipt_timeout_s=2.0, fee_bump_percent=25)
    state = build_state(settings, chain=chain)  # type: ignore[arg-type]
    engine: Engine = state.engine
    direct = RegistryClient(chain.rpc_url, chain.registry, None)
    ids = ingest(make_sessionmaker(engine), 5)
    caplog.set_level(logging.INFO, logger="service.anchoring.worker")
    worker = WorkerThread(AnchorWorker(state.settings, engine, chain)).start()
    spike: FeeSpike | None = None
    try:
        def sent() -> bytes | None:
            with engine.connect() as conn:
                row = conn.execute(select(Batch.status, Batch.raw_tx)).first()
            return row.raw_tx if row is not None and row.status == "sent" else None

        wait_for(lambda: sent() is not None, 30, "the first anchor to be sent")
        first = sent()
        assert first is not None
        nonce, first_fees = signed_tx_fees(first)
        assert first_fees.max_fee_per_gas is not None and first_fees.max_fee_per_gas < 100 * GWEI
        spike = FeeSpike(direct, 100 * GWEI)
        wait_for(lambda: drained(engine), 40, "the stuck anchor to be replaced and mined")
    finally:
        if spike is not None:
            spike.stop()
        worker.stop()
    with engine.connect() as conn:
        final = conn.execute(select(Batch.raw_tx, Batch.tx_hash)).one()
    final_nonce, final_fees = signed_tx_fees(final.raw_tx)
    assert final_nonce == nonce, "a replacement keeps the nonce"
    assert final_fees.max_fee_per_gas is not None and final_fees.max_fee_per_gas >= 100 * GWEI
    assert direct.get_receipt(final.tx_hash) is not None
    assert any("replacing stuck anchor tx" in r.message for r in caplog.records)
    assert assert_exactly_once(engine, direct, ids) == 1
    state.close()
