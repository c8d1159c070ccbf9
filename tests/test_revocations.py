"""Queued report revocations reach the registry's revoke() exactly once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.contract import RegistryClient
from service.anchoring.revocations import process_pending_revocations
from service.anchoring.worker import AnchorWorker
from service.state import ServiceState, build_state
from service.storage.db import session_scope
from service.storage.models import ChainRevocation
from tests.fixtures.chain import DevChain
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, client_for, make_app, seed_record


@pytest.mark.chain
def test_revocation_is_sent_once_and_survives_retries(
    tmp_path: Path, sqlite_url: str, hardhat: DevChain, fresh_registry: str
) -> None:
    state = build_state(make_settings(tmp_path, sqlite_url), chain=None)
    lab = add_lab(state, 1)
    client = client_for(make_app(state), lab)
    project = seed_record(state, lab.institution or "", "project")
    codes = []
    for no in ("R-1", "R-2"):
        r = client.issue_code(no, project)
        codes.append(r.json()["code"])
        r = client.post(f"/api/v1/reports/{codes[-1]}/revocation", json_body={"reason": "x"})
        assert r.status_code == 201, r.text
    registry = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)

    assert process_pending_revocations(state.sessions, registry) == 2
    with state.sessions() as s:
        rows = {r.code: r for r in s.query(ChainRevocation)}
    for code in codes:
        subject = hashlib.sha256(b"jianzheng/report-code/" + code.encode()).digest()
        info = registry.revocation_of(subject)
        assert info is not None and info.reason.hex() == rows[code].reason
        assert rows[code].status == "done" and rows[code].tx_hash
    assert process_pending_revocations(state.sessions, registry) == 0

    # A crash after the broadcast leaves the row `sent`/`pending`: the next run finds the
    # revocation on chain and marks it done without sending again.
    with session_scope(state.sessions) as s:
        for row in s.query(ChainRevocation):
            row.status = "pending"
    before = registry.pending_nonce()
    assert process_pending_revocations(state.sessions, registry) == 2
    assert registry.pending_nonce() == before

    # If the pre-check misses it, the contract's AlreadyRevoked revert also counts as done.
    with session_scope(state.sessions) as s:
        for row in s.query(ChainRevocation):
            row.status = "pending"

    class Blind(RegistryClient):
        def revocation_of(self, subject):  # type: ignore[no-untyped-def]
            return None

    blind = Blind(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    assert process_pending_revocations(state.sessions, blind) == 2
    with state.sessions() as s:
        assert {r.status for r in s.query(ChainRevocation)} == {"done"}
    state.engine.dispose()


def _queue_revocation(
    tmp_path: Path, db_url: str, chain: ChainInfo, **chain_settings: Any
) -> tuple[ServiceState, ChainRevocation]:
    """A service on `chain` (with these JZ_CHAIN__* settings) with one revocation queued."""
    settings = make_settings(
        tmp_path,
        db_url,
        chain={"rpc_url": chain.rpc_url, "chain_id": chain.chain_id,
               "registry": chain.registry, **chain_settings},
    )
    state = build_state(settings, chain=chain)
    lab = add_lab(state, 1)
    client = client_for(make_app(state), lab)
    project = seed_record(state, lab.institution or "", "project")
    code = client.issue_code("R-1", project).json()["code"]
    r = client.post(f"/api/v1/reports/{code}/revocation", json_body={"reason": "x"})
    assert r.status_code == 201, r.text
    return state, _row(state, code)


def _row(state: ServiceState, code: str) -> ChainRevocation:
    with state.sessions() as s:
        row = s.query(ChainRevocation).filter_by(code=code).one()
        s.expunge(row)
    return row


@pytest.mark.chain
def test_revocation_is_written_only_once_confirmations_blocks_are_on_top(
    tmp_path: Path, sqlite_url: str, hardhat: DevChain, fresh_registry: str
) -> None:
    """JZ_CHAIN__CONFIRMATIONS means the same for a revocation as for an anchor: blocks
    after the transaction's own block (the worker passes its chain settings)."""
    chain = ChainInfo(hardhat.rpc_url, hardhat.chain_id, fresh_registry)
    state, queued = _queue_revocation(
        tmp_path, sqlite_url, chain, confirmations=2, receipt_timeout_s=1.0
    )
    worker = AnchorWorker(state.settings, state.engine, chain)
    registry = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)

    # Automine: the revoke transaction is mined at once, but no block follows it.
    worker._process_revocations()
    row = _row(state, queued.code)
    assert row.status == "sent" and row.tx_hash
    assert (row.last_error or "").startswith("chain_timeout")
    assert "not 2 blocks deep after 1 s" in (row.last_error or "")
    assert registry.revocation_of(queued.subject) is not None
    sent = registry.pending_nonce()

    registry.rpc("evm_mine", [])
    worker._process_revocations()
    assert _row(state, queued.code).status == "sent"  # one block on top: not yet

    registry.rpc("evm_mine", [])
    worker._process_revocations()
    done = _row(state, queued.code)
    assert done.status == "done" and done.tx_hash == row.tx_hash and done.last_error is None
    assert registry.pending_nonce() == sent  # waiting never sent a second transaction
    state.engine.dispose()


@pytest.mark.chain
def test_revocation_found_on_chain_waits_for_its_confirmations_too(
    tmp_path: Path, sqlite_url: str, hardhat: DevChain, fresh_registry: str
) -> None:
    """A revocation already on chain (a crash after the broadcast, or another sender) is
    written once its own Revoked log is `confirmations` blocks deep, not before."""
    chain = ChainInfo(hardhat.rpc_url, hardhat.chain_id, fresh_registry)
    state, queued = _queue_revocation(
        tmp_path, sqlite_url, chain, confirmations=2, receipt_timeout_s=1.0
    )
    worker = AnchorWorker(state.settings, state.engine, chain)
    registry = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    registry.revoke(queued.subject, queued.reason)
    sent = registry.pending_nonce()

    worker._process_revocations()
    assert _row(state, queued.code).status == "pending"
    registry.rpc("evm_mine", [])
    registry.rpc("evm_mine", [])
    worker._process_revocations()
    assert _row(state, queued.code).status == "done"
    assert registry.pending_nonce() == sent
    state.engine.dispose()


@pytest.mark.chain
def test_revocation_gives_up_after_the_receipt_timeout(
    tmp_path: Path, sqlite_url: str, hardhat: DevChain, fresh_registry: str
) -> None:
    """JZ_CHAIN__RECEIPT_TIMEOUT_S bounds the wait for a revocation that is not mined; the
    stored transaction is picked up once it is."""
    chain = ChainInfo(hardhat.rpc_url, hardhat.chain_id, fresh_registry)
    state, queued = _queue_revocation(tmp_path, sqlite_url, chain, receipt_timeout_s=1.0)
    worker = AnchorWorker(state.settings, state.engine, chain)
    registry = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    registry.rpc("evm_setAutomine", [False])
    try:
        worker._process_revocations()
        row = _row(state, queued.code)
        assert row.status == "sent" and row.tx_hash
        assert "not mined after 1 s" in (row.last_error or "")
        assert registry.revocation_of(queued.subject) is None
    finally:
        registry.rpc("evm_setAutomine", [True])
        registry.rpc("evm_mine", [])
    worker._process_revocations()
    done = _row(state, queued.code)
    assert done.status == "done" and done.tx_hash == row.tx_hash
    assert registry.revocation_of(queued.subject) is not None
    state.engine.dispose()
