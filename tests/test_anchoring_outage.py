"""Chain outage under continuing ingest: a loopback TCP proxy between the worker and the
Hardhat node is cut (connection refused), then black-holed (requests reach the node, answers
are lost: a sent transaction is mined but the worker never hears of it), then restored.
Nothing accepted is lost, the backlog is anchored, /healthz and /metrics tell the story."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.contract import RegistryClient
from service.app import create_app
from service.domain.proofs import build_proof
from service.state import build_state
from service.storage.models import Batch
from tests.anchoring_support import (
    assert_exactly_once,
    drained,
    ingest,
    prometheus_values,
    wait_for,
)
from tests.fixtures.chain import DevChain
from tests.fixtures.db import make_settings
from verifier.chain import CachingChain, RpcClient
from verifier.proof import Pins, parse_proof, verify_proof

pytestmark = pytest.mark.chain


class TcpProxy:
    """127.0.0.1:port -> target. `cut()` refuses connections; `lose_send_answers()` forwards
    everything but drops the node's answer to every `eth_sendRawTransaction` and closes that
    connection (the transaction is mined, the sender never hears of it); `restore()` forwards
    both ways again."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.mode = "up"
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.lost_answers = 0
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.mode == "down" or listener is not self._listener:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            lose = threading.Event()  # the answer in flight on this connection is to be lost
            threading.Thread(
                target=self._pump, args=(client, upstream, lose, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, lose, True), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, lose: threading.Event, answers: bool
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not answers and self.mode == "lose" and b"eth_sendRawTransaction" in data:
                    lose.set()
                if answers and lose.is_set():
                    self.lost_answers += 1
                    break  # drop the answer and the connection
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_connections(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self) -> None:
        self.mode = "down"
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        self._drop_connections()

    def lose_send_answers(self) -> None:
        if self._listener is None:
            self._listen()
        self._drop_connections()
        self.mode = "lose"

    def restore(self) -> None:
        self._drop_connections()
        if self._listener is None:
            self._listen()
        self.mode = "up"

    def close(self) -> None:
        self.cut()


@pytest.mark.slow
def test_chain_outage_under_ingest_then_recovery(
    tmp_path: Path,
    hardhat: DevChain,
    fresh_registry: str,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="service.anchoring.worker")
    proxy = TcpProxy(urlparse(hardhat.rpc_url).port or 0)
    chain_via_proxy = ChainInfo(proxy.url, hardhat.chain_id, fresh_registry)
    settings = make_settings(
        tmp_path,
        sqlite_url,
        anchor={
            "batch_max_leaves": 50,
            "batch_max_age_s": 0.05,
            "retry_initial_s": 0.1,
            "retry_max_s": 0.4,
            "poll_interval_s": 0.05,
        },
        chain={
            "rpc_url": proxy.url,
            "chain_id": hardhat.chain_id,
            "registry": fresh_registry,
            "receipt_timeout_s": 1.5,
        },
    )
    state = build_state(settings, chain_via_proxy)
    direct = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    app = create_app(state.settings, state=state, start_worker=True)
    try:
        with TestClient(app) as http:
            ids = ingest(state.sessions, 100, chunk=25)
            wait_for(lambda: drained(state.engine), 30, "the first records to be anchored")
            seq_before = http.get("/healthz").json()["anchoring"]["last_anchored_seq"]
            assert seq_before >= 2

            proxy.cut()
            for i in range(6):  # records are still accepted while the chain is down
                ids += ingest(state.sessions, 30, chunk=30, tag=f"down{i}")
                time.sleep(0.2)
            wait_for(
                lambda: http.get("/healthz").json()["anchoring"]["anchor_failures"] >= 2,
                15,
                "failures to be counted",
            )
            health = http.get("/healthz").json()["anchoring"]
            assert health["pending_leaves"] > 0, health
            assert health["oldest_pending_age_s"] > 0.3
            assert health["last_anchored_seq"] == seq_before
            assert "unreachable" in (health["last_error"] or "")
            metrics = prometheus_values(http.get("/metrics").text)
            # Nothing is ingested now and the worker cannot anchor, nor move leaves out of
            # the outbox while its one failed batch waits: the gauge is exactly the health
            # figure, and every record accepted during the outage (6 x 30) is either still
            # pending or in that unconfirmed batch.
            with state.engine.connect() as conn:
                in_flight = conn.execute(
                    select(func.coalesce(func.sum(Batch.size), 0)).where(
                        Batch.status != "anchored"
                    )
                ).scalar_one()
            assert metrics["jianzheng_pending_leaves"] == health["pending_leaves"]
            assert health["pending_leaves"] + in_flight == 6 * 30, (health, in_flight)
            assert metrics["jianzheng_anchor_failures_total"] >= health["anchor_failures"] >= 2
            assert (
                metrics["jianzheng_oldest_pending_age_seconds"] >= health["oldest_pending_age_s"]
            )
            assert metrics["jianzheng_last_anchored_seq"] == seq_before

            # The node is back but the answers to sent transactions are lost: every batch sent
            # now is mined while the worker sees a failure, and must be found on chain.
            proxy.lose_send_answers()
            for i in range(4):
                ids += ingest(state.sessions, 30, chunk=30, tag=f"lost{i}")
                time.sleep(0.3)
            wait_for(lambda: proxy.lost_answers >= 2, 30, "sent transactions with lost answers")

            proxy.restore()
            ids += ingest(state.sessions, 40, chunk=20, tag="back")
            wait_for(lambda: drained(state.engine), 60, "the backlog to be anchored")
            health = http.get("/healthz").json()["anchoring"]
            assert health["pending_leaves"] == 0 and health["unconfirmed_batches"] == 0
            assert health["halted"] is None
            assert "was already anchored by tx" in caplog.text  # found, not sent again
            k = assert_exactly_once(state.engine, direct, ids)
            assert health["last_anchored_seq"] == k > seq_before
    finally:
        proxy.close()

    source = CachingChain(RpcClient(hardhat.rpc_url))
    pins = Pins(chain_id=hardhat.chain_id, registry=fresh_registry)
    with state.sessions() as session:
        for rid in ids:
            doc = build_proof(session, rid, chain_via_proxy)
            assert doc is not None
            result = verify_proof(parse_proof(json.dumps(doc)), source, pins)
            assert result.bottom_line, result.findings
    state.engine.dispose()
