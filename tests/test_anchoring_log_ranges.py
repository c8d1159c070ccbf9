"""Crash recovery on a chain that caps log ranges (issue 11, finding 5).

Besu refuses `eth_getLogs` over more than 1,000 blocks. A worker SIGKILLed right after
broadcasting an anchor must, on restart, find what it sent without asking for logs from
block 0: the stored transaction's receipt first, else the `Anchored` log from the block
`anchorOf` names, in windows of at most 1,000 blocks. Here a proxy in front of anvil refuses
longer ranges as Besu does, and the chain is mined 1,500 blocks ahead before and after the
anchor. Without the fix the restarted worker retries forever and the backlog never drains.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from service.anchoring.contract import MAX_LOG_RANGE, RegistryClient
from service.storage.db import make_engine, make_sessionmaker, upgrade
from service.storage.models import Batch
from tests.anchoring_support import (
    assert_exactly_once,
    drained,
    ingest,
    start_worker,
    stop_worker,
    wait_for,
    worker_env,
)
from tests.fixtures.chain import AnvilChain
from tests.rpc_proxy import LogsRangeProxy

pytestmark = [pytest.mark.chain, pytest.mark.slow]

AHEAD = 1_500  # blocks mined before and after the anchor: more than one log window


@pytest.fixture
def proxy(anvil: AnvilChain) -> Iterator[LogsRangeProxy]:
    p = LogsRangeProxy(anvil.rpc_url, max_logs_range=1_000)
    yield p
    p.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'jz.db'}"
    upgrade(url)
    e = make_engine(url)
    yield e
    e.dispose()


def mine(client: RegistryClient, blocks: int) -> None:
    client.rpc("anvil_mine", [hex(blocks)])


def test_the_proxy_refuses_long_log_ranges(anvil: AnvilChain, proxy: LogsRangeProxy) -> None:
    """The fault is real: a search from block 0 is refused once the chain is long."""
    client = RegistryClient(proxy.url, anvil.registry, anvil.service_key)
    mine(client, AHEAD)
    with pytest.raises(Exception, match="range"):
        client.rpc("eth_getLogs", [{"address": client.address, "fromBlock": "0x0",
                                    "toBlock": "latest", "topics": []}])
    assert proxy.refused == 1


@pytest.mark.parametrize("stored", ["mined", "replaced"])
def test_restart_after_broadcast_on_a_long_chain(
    stored: str, tmp_path: Path, anvil: AnvilChain, proxy: LogsRangeProxy, engine: Engine
) -> None:
    """`mined`: the stored transaction is the one that anchored (receipt path).
    `replaced`: the stored hash is of a transaction the chain never saw (as after a fee
    bump whose original was mined first), so only the log search can find the anchor."""
    direct = RegistryClient(anvil.rpc_url, anvil.registry, anvil.service_key)
    mine(direct, AHEAD)
    ids = ingest(make_sessionmaker(engine), 40)
    env = worker_env(
        str(engine.url), tmp_path / "var", dataclasses.replace(anvil, rpc_url=proxy.url),
        anvil.registry, batch_max_leaves=100, batch_max_age_s=0, retry_initial_s=0.1,
        retry_max_s=0.5,
    )
    log = tmp_path / "worker.log"
    proc = start_worker(env, log, crash_at="sent:1")
    assert proc.wait(60) == -signal.SIGKILL, log.read_text()
    assert direct.batch_count() == 1
    with engine.connect() as conn:
        batch = conn.execute(Batch.__table__.select()).one()
    assert batch.status == "sent"
    info = direct.anchor_of(batch.root)
    assert info is not None
    if stored == "replaced":
        with engine.begin() as conn:
            conn.execute(update(Batch).values(tx_hash="0x" + "ab" * 32))
    mine(direct, AHEAD)
    assert direct.block_number() > info.block_number + MAX_LOG_RANGE

    proxy.log_ranges.clear()
    before = len(log.read_text())
    proc = start_worker(env, log)
    try:
        wait_for(lambda: drained(engine), 45, "the crashed batch to be recorded")
    finally:
        stop_worker(proc)
    assert "was already anchored by tx" in log.read_text()[before:]
    assert proxy.refused == 0
    # Every log search started at the anchor's block and stayed within one window.
    assert all(lo >= info.block_number and hi - lo < MAX_LOG_RANGE
               for lo, hi in proxy.log_ranges), proxy.log_ranges
    if stored == "replaced":
        assert proxy.log_ranges, "the anchor can only have been found by its log"
    with engine.connect() as conn:
        row = conn.execute(Batch.__table__.select()).one()
    assert row.block_number == info.block_number
    assert assert_exactly_once(engine, direct, ids) == 1
