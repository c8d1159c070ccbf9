"""Queued report revocations reach the registry's revoke() exactly once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.anchoring.contract import RegistryClient
from service.anchoring.revocations import process_pending_revocations
from service.state import build_state
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
