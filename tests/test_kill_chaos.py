"""SIGKILL of API processes and of the anchoring worker under write load (issue 11).

`jianzheng api --workers 2` and `jianzheng worker` run as real processes on 127.0.0.1 over
one database (SQLite and PostgreSQL) and an anvil chain. Three signed clients write
projects while API processes and the worker are `kill -9`ed at random moments (seeded; the
seed is printed). Afterwards every acknowledged write is stored exactly once, every record
is anchored exactly once with batch seq == batchCount(), every acknowledged record's proof
verifies against the chain, and anchoring is not halted.

Bounded for `make test` (a 10 s storm); `JZ_CHAOS_SECONDS` makes it longer (`make fuzz`).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from pathlib import Path

import pytest

from service.state import build_state
from service.storage.db import make_engine
from tests.anchoring_support import drained, start_worker, stop_worker, wait_for, worker_env
from tests.chaos_kit import ApiProcesses, WriteLoad, check_after_faults, kill
from tests.fixtures.chain import AnvilChain
from tests.fixtures.db import make_settings
from tests.labkit import add_lab

pytestmark = [pytest.mark.chain, pytest.mark.slow]
log = logging.getLogger(__name__)

STORM_S = float(os.environ.get("JZ_CHAOS_SECONDS", "10"))
#: The API supervisor gives up after 5 deaths in 60 s (service/runtime.py); stay under it.
MAX_API_KILLS = 4
#: Least time between two API kills (a replacement process takes a few seconds to start).
API_KILL_GAP_S = 3.0


def test_sigkill_api_and_worker_under_load(
    tmp_path: Path, db_url: str, anvil: AnvilChain
) -> None:
    seed = int(os.environ.get("JZ_CHAOS_SEED", str(time.time_ns() % 10**6)))
    rng = random.Random(seed)
    log.warning("chaos seed %d", seed)
    state = build_state(make_settings(tmp_path, db_url), chain=None)
    lab = add_lab(state, 61)
    state.close()
    env = worker_env(db_url, tmp_path / "var", anvil, anvil.registry, batch_max_leaves=40,
                     batch_max_age_s=0.2, retry_initial_s=0.1, retry_max_s=1.0)
    api = ApiProcesses(env, tmp_path / "api.log", workers=2)
    worker_log = tmp_path / "worker.log"
    worker = start_worker(env, worker_log)
    kills = {"api": 0, "worker": 0}
    try:
        api.wait_ready()
        load = WriteLoad(api.url, lab.key_id, lab.secret, threads=3, max_writes=3_000)
        deadline = time.monotonic() + STORM_S
        last_api_kill = 0.0
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.2))
            children = api.children()
            # One API process at a time, the other one serving meanwhile.
            api_turn = len(children) >= 2 and time.monotonic() - last_api_kill > API_KILL_GAP_S
            if kills["api"] < MAX_API_KILLS and api_turn and rng.random() < 0.5:
                kill(rng.choice(children))
                kills["api"] += 1
                last_api_kill = time.monotonic()
            else:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                kills["worker"] += 1
                worker = start_worker(env, worker_log)
        ledger = load.stop()
        engine = make_engine(db_url)
        try:
            wait_for(lambda: drained(engine), 60, "the backlog to be anchored after the storm")
            stop_worker(worker)
            wait_for(lambda: len(api.children()) >= 2, 60, "the API processes to be replaced")
            checked = check_after_faults(engine, anvil.rpc_url, anvil.chain_id, anvil.registry,
                                         ledger, api.url, lab.key_id, lab.secret)
        finally:
            engine.dispose()
    finally:
        stop_worker(worker)
        api.stop()
    log.warning(
        f"chaos[{db_url.split(':')[0]}] seed {seed}: sent {ledger.sent}, acknowledged "
        f"{len(ledger.acknowledged)}, proofs checked {checked}, kills {kills}, "
        f"statuses {dict(ledger.statuses)}, connection errors {ledger.connection_errors}"
    )
    assert ledger.server_errors == 0, ledger.statuses
    assert kills["api"] >= 1 and kills["worker"] >= 1
    assert len(ledger.acknowledged) >= 50, "the load did not run"
    assert checked == len(ledger.acknowledged)
