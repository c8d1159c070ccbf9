"""PostgreSQL restarted during ingest (issue 11).

A private PostgreSQL instance (tests/pg_kit.py; the shared cluster is never touched)
under `jianzheng api --workers 2` and two `jianzheng worker` processes on an anvil chain,
with three signed clients writing. The server is stopped `-m fast`, started again, then
stopped `-m immediate` (crash recovery) and started. During the outages writes answer
503 `database_unavailable`, never 500, and no API process dies; afterwards no
acknowledged write is lost, every proof verifies, and exactly one worker holds the
anchoring leader lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from service.anchoring.leader import PG_LOCK_KEY
from service.state import build_state
from service.storage.db import make_engine
from tests.anchoring_support import drained, start_worker, stop_worker, wait_for, worker_env
from tests.chaos_kit import ApiProcesses, WriteLoad, check_after_faults
from tests.fixtures.chain import AnvilChain
from tests.fixtures.db import make_settings
from tests.labkit import add_lab
from tests.pg_kit import PrivatePostgres

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.slow]
log = logging.getLogger(__name__)

OUTAGE_S = 2.0


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


def leader_locks(pg: PrivatePostgres) -> int:
    """Sessions holding the anchoring leader's advisory lock (bigint key: classid/objid)."""
    with psycopg.connect(pg.admin_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            (PG_LOCK_KEY,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_postgresql_restarted_fast_and_immediate_during_ingest(
    tmp_path: Path, private_pg: PrivatePostgres, anvil: AnvilChain
) -> None:
    pg = private_pg
    url = pg.create_database("jz")
    state = build_state(make_settings(tmp_path, url), chain=None)
    lab = add_lab(state, 62)
    state.close()
    env = worker_env(url, tmp_path / "var", anvil, anvil.registry, batch_max_leaves=40,
                     batch_max_age_s=0.2, retry_initial_s=0.1, retry_max_s=1.0)
    api = ApiProcesses(env, tmp_path / "api.log", workers=2)
    workers = [start_worker(env, tmp_path / "w1.log"), start_worker(env, tmp_path / "w2.log")]
    try:
        api.wait_ready()
        api_pids = sorted(api.children())
        wait_for(lambda: leader_locks(pg) == 1, 30, "a leader")
        load = WriteLoad(api.url, lab.key_id, lab.secret, threads=3, max_writes=3_000)
        time.sleep(2)
        for mode in ("fast", "immediate"):
            before = load.ledger.count(503)
            pg.stop(mode)
            time.sleep(OUTAGE_S)
            pg.start()
            wait_for(lambda b=before: load.ledger.count(503) > b, 10,  # type: ignore[misc]
                     f"503s during the {mode} restart")
            time.sleep(2)
        ledger = load.stop()
        engine = make_engine(url)
        try:
            wait_for(lambda: drained(engine), 60, "the backlog to be anchored")
            checked = check_after_faults(engine, anvil.rpc_url, anvil.chain_id, anvil.registry,
                                         ledger, api.url, lab.key_id, lab.secret)
        finally:
            engine.dispose()
        wait_for(lambda: leader_locks(pg) == 1, 30, "exactly one leader after the restarts")
        assert all(w.poll() is None for w in workers), "a worker died"
        assert sorted(api.children()) == api_pids, "an API process died"
    finally:
        for w in workers:
            stop_worker(w)
        api.stop()
    log.warning(
        "pg restart: sent %d, acknowledged %d, proofs checked %d, statuses %s, codes %s, "
        "connection errors %d", ledger.sent, len(ledger.acknowledged), checked,
        dict(ledger.statuses), dict(ledger.codes), ledger.connection_errors,
    )
    assert ledger.count(500) == 0 and ledger.server_errors == ledger.count(503)
    assert set(ledger.codes) == {"database_unavailable"}, ledger.codes
    assert ledger.connection_errors == 0
    assert checked == len(ledger.acknowledged) >= 50
