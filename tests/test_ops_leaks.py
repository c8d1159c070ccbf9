"""/healthz and /metrics are unauthenticated: they must not show the chain's RPC URL (it may
carry a credential) nor raw exception text (issue 11, finding 8)."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.status import STATE_ANCHOR_FAILURES, STATE_LAST_ERROR, public_error
from service.app import create_app
from service.state import build_state
from service.storage.db import session_scope
from service.storage.models import KeyValue
from tests.fixtures.db import make_settings

SECRET_URL = "https://user:s3cr3t-token@besu.internal:8545/rpc?apikey=s3cr3t-token"


def test_health_and_metrics_show_no_rpc_url_or_error_text(tmp_path: Path, db_url: str) -> None:
    chain = ChainInfo(SECRET_URL, 1337, "0x" + "ab" * 20)
    state = build_state(make_settings(tmp_path, db_url), chain=chain)
    with session_scope(state.sessions) as s:
        s.add(KeyValue(key=STATE_ANCHOR_FAILURES, value="3"))
        s.add(
            KeyValue(
                key=STATE_LAST_ERROR,
                value=f"ChainUnreachable: eth_blockNumber: chain node unreachable: {SECRET_URL}",
            )
        )
    try:
        http = TestClient(create_app(state.settings, state=state))
        health = http.get("/healthz")
        assert health.status_code == 200
        assert "s3cr3t" not in health.text and "besu.internal" not in health.text
        body = health.json()
        assert body["chain"] == {"chain_id": 1337, "registry": chain.registry}
        assert body["anchoring"]["last_error"] == "chain_unreachable"
        assert body["anchoring"]["anchor_failures"] == 3
        metrics = http.get("/metrics")
        assert metrics.status_code == 200 and "s3cr3t" not in metrics.text
    finally:
        state.close()


def test_public_error_kinds() -> None:
    assert public_error("") is None
    assert public_error("ChainTimeout: tx 0xab not mined after 60 s") == "chain_timeout"
    assert public_error("OperationalError: (psycopg.OperationalError) host=db") == "database_error"
    assert public_error("KeyError: 'x' at /srv/secret") == "anchoring_error"
