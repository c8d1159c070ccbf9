"""Anchoring worker and proofs against a real Hardhat node (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.contract import RegistryClient
from service.anchoring.worker import (
    AnchorWorker,
    ChainMismatch,
    anchor_until_drained,
)
from service.api.problems import status_of
from service.app import create_app
from service.domain.proofs import build_proof, build_proofs, clear_cache
from service.errors import JianzhengError
from service.state import ServiceState
from service.storage.models import Batch, Record
from tests.anchoring_support import assert_exactly_once, ingest
from tests.fixtures.chain import DevChain
from tests.fixtures.db import state_with_chain
from verifier.chain import CachingChain, RpcClient
from verifier.models import ProofVerification
from verifier.proof import Pins, parse_proof, verify_proof

pytestmark = pytest.mark.chain


def _chain(hardhat: DevChain, registry: str) -> ChainInfo:
    return ChainInfo(hardhat.rpc_url, hardhat.chain_id, registry)


def _client(hardhat: DevChain, registry: str) -> RegistryClient:
    return RegistryClient(hardhat.rpc_url, registry, hardhat.service_key)


def _verify_all(state: ServiceState, chain: ChainInfo, ids: list[str]) -> list[ProofVerification]:
    source = CachingChain(RpcClient(chain.rpc_url))
    pins = Pins(chain_id=chain.chain_id, registry=chain.registry)
    results: list[ProofVerification] = []
    with state.sessions() as session:
        docs = build_proofs(session, ids, chain)  # one query per 500 ids, one tree per batch
    for rid in ids:
        doc = docs[rid]
        assert doc is not None, f"no proof for {rid}"
        proof = parse_proof(json.dumps(doc).encode())
        results.append(verify_proof(proof, source, pins))
    return results


@pytest.mark.slow
def test_ten_thousand_records_anchored_and_every_proof_verifies(
    tmp_path: Path, hardhat: DevChain, fresh_registry: str, sqlite_url: str
) -> None:
    chain = _chain(hardhat, fresh_registry)
    state = state_with_chain(
        tmp_path, sqlite_url, chain, anchor={"batch_max_leaves": 1000, "batch_max_age_s": 0}
    )
    ids = ingest(state.sessions, 10_000)
    with state.sessions() as session:
        assert build_proof(session, ids[0], chain) is None  # pending: 202
        with pytest.raises(JianzhengError) as err:
            build_proof(session, "01JD3Q2Y7ZK1M8R0F4T6W9XH5C", chain)
        assert status_of(err.value) == 404 and err.value.code == "record_not_found"

    worker = AnchorWorker(state.settings, state.engine, chain)
    assert anchor_until_drained(worker) == 10
    client = _client(hardhat, fresh_registry)
    assert assert_exactly_once(state.engine, client, ids) == 10

    clear_cache()
    results = _verify_all(state, chain, ids)
    failed = [r for r in results if not r.bottom_line]
    assert not failed, failed[:3]
    assert len(results) == 10_000
    with state.sessions() as session:
        doc = build_proof(session, ids[1234], chain)
    assert doc is not None
    assert doc["format"] == "jianzheng-proof/1"
    assert doc["batch"]["seq"] == 2 and doc["batch"]["tree_size"] == 1000
    assert doc["batch"]["leaf_index"] == 234 and len(doc["batch"]["path"]) == 10
    assert doc["anchor"]["chain_id"] == hardhat.chain_id
    assert doc["anchor"]["registry"].lower() == fresh_registry.lower()
    state.engine.dispose()


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_tampered_record_fails_and_is_named(
    tmp_path: Path,
    hardhat: DevChain,
    fresh_registry: str,
    db: str,
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url")
    chain = _chain(hardhat, fresh_registry)
    state = state_with_chain(tmp_path, url, chain, anchor={"batch_max_age_s": 0})
    ids = ingest(state.sessions, 40)
    anchor_until_drained(AnchorWorker(state.settings, state.engine, chain))
    victim = ids[17]
    with state.sessions() as session:
        canonical = session.scalar(select(Record.canonical).where(Record.id == victim))
        assert canonical is not None and b'"n":17' in canonical
        session.execute(
            update(Record)
            .where(Record.id == victim)
            .values(canonical=canonical.replace(b'"n":17', b'"n":71'))
        )
        session.commit()
    results = {r.record_id: r for r in _verify_all(state, chain, ids)}
    bad = [rid for rid, r in results.items() if not r.bottom_line]
    assert bad == [victim]
    finding = results[victim].findings[0]
    assert finding.record_id == victim and finding.record_type == "test_record"
    assert results[victim].record_hash.ok is False
    # Named precisely: the one error is the record-hash check, saying the record changed.
    assert [(f.check, f.severity) for f in results[victim].findings] == [("record_hash", "error")]
    assert "the record was changed" in finding.message
    assert results[victim].inclusion.ok and results[victim].anchor.ok
    state.engine.dispose()


def test_batches_close_by_size_and_by_age(
    tmp_path: Path, hardhat: DevChain, fresh_registry: str, sqlite_url: str
) -> None:
    chain = _chain(hardhat, fresh_registry)
    state = state_with_chain(
        tmp_path, sqlite_url, chain, anchor={"batch_max_leaves": 5, "batch_max_age_s": 30}
    )
    clock = [time.time()]
    worker = AnchorWorker(state.settings, state.engine, chain, now=lambda: clock[0])
    assert worker._ensure_leader()
    ids = ingest(state.sessions, 12)
    while worker.step():
        pass
    with state.sessions() as session:
        sizes = session.scalars(select(Batch.size).order_by(Batch.seq)).all()
    assert sizes == [5, 5]  # two full batches at once; 2 leaves wait for the age limit
    assert not worker.step()
    clock[0] += 31
    assert worker.step()
    with state.sessions() as session:
        sizes = session.scalars(select(Batch.size).order_by(Batch.seq)).all()
        order = session.execute(select(Record.id).order_by(Record.id)).scalars().all()
    assert sizes == [5, 5, 2]
    assert sorted(order) == sorted(ids)
    assert assert_exactly_once(state.engine, _client(hardhat, fresh_registry), ids) == 3
    worker.lock.release()
    state.engine.dispose()


def test_refuses_to_anchor_when_chain_lost_its_state(
    tmp_path: Path, hardhat: DevChain, fresh_registry: str, sqlite_url: str
) -> None:
    """The chain forgot batches the database has anchored (dev chain state lost): the worker
    halts, /healthz and /metrics say so, nothing is sent; records are still accepted."""
    chain = _chain(hardhat, fresh_registry)
    client = _client(hardhat, fresh_registry)
    state = state_with_chain(tmp_path, sqlite_url, chain, anchor={"batch_max_age_s": 0})
    snapshot = client.rpc("evm_snapshot", [])
    ingest(state.sessions, 10)
    anchor_until_drained(AnchorWorker(state.settings, state.engine, chain))
    assert client.batch_count() == 1
    assert client.rpc("evm_revert", [snapshot]) is True  # the chain loses batch 1
    assert client.batch_count() == 0
    ingest(state.sessions, 5, tag="after")

    worker = AnchorWorker(state.settings, state.engine, chain)
    assert worker._ensure_leader()
    with pytest.raises(ChainMismatch, match="holds 0 batches but the database has batch 1"):
        worker.step()
    worker.lock.release()

    app = create_app(state.settings, state=state, start_worker=True)
    with TestClient(app) as http:
        deadline = time.monotonic() + 20
        while not (health := http.get("/healthz").json())["anchoring"]["halted"]:
            if time.monotonic() > deadline:  # the worker thread starts, checks, halts
                pytest.fail(f"the worker did not halt within 20 s: {health}")
            time.sleep(0.05)
        metrics = http.get("/metrics").text
    assert health["status"] == "degraded"
    assert "holds 0 batches" in health["anchoring"]["halted"]
    assert health["anchoring"]["pending_leaves"] == 5
    assert "jianzheng_anchor_halted 1.0" in metrics
    assert client.batch_count() == 0  # nothing sent
    with state.sessions() as session:
        assert session.scalar(select(Batch.seq).where(Batch.status != "anchored")) is None
