"""`jianzheng serve` / `jianzheng chain up` on the embedded defaults: a persistent dev chain
(anvil with a state file), the registry deployed once, and proofs that stay verifiable
across a restart of the whole service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.anchoring.contract import RegistryClient
from service.anchoring.devchain import free_port
from service.domain.proofs import build_proofs, clear_cache
from service.storage.db import make_engine, make_sessionmaker
from tests.anchoring_support import (
    REPO_ROOT,
    api_children,
    drained,
    healthz_of,
    ingest,
    serve_env,
    start_jianzheng,
    stop_jianzheng,
    wait_for,
)
from verifier.chain import CachingChain, RpcClient
from verifier.proof import Pins, parse_proof, verify_proof

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    env = serve_env(tmp_path / "var")
    yield env, tmp_path / "var"


def test_serve_restart_keeps_every_proof_verifiable(
    served: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, data_dir = served
    log = tmp_path / "serve.log"
    port = free_port()
    proc = start_jianzheng(env, log, "serve", "--port", str(port))
    try:
        wait_for(lambda: healthz_of(port) is not None, 90, "jianzheng serve to answer")
        deployment = json.loads((data_dir / "chain" / "deployment.json").read_text())
        engine = make_engine(f"sqlite:///{data_dir / 'jianzheng.db'}")
        sessions = make_sessionmaker(engine)
        ids = ingest(sessions, 30)
        wait_for(lambda: drained(engine), 30, "the records to be anchored")
        with sessions() as session:
            proofs = build_proofs(session, ids, None)
    finally:
        assert stop_jianzheng(proc) == 0, log.read_text()[-3000:]
    assert (data_dir / "chain" / "state.json").exists()

    # Everything down; start again on the same data dir: same chain, same registry.
    port = free_port()
    proc = start_jianzheng(env, log, "serve", "--port", str(port))
    try:
        wait_for(lambda: healthz_of(port) is not None, 90, "jianzheng serve to answer again")
        assert json.loads((data_dir / "chain" / "deployment.json").read_text()) == deployment
        source = CachingChain(RpcClient(deployment["rpc_url"]))
        pins = Pins(chain_id=deployment["chain_id"], registry=deployment["registry"])
        for rid in ids:
            doc = proofs[rid]
            assert doc is not None
            result = verify_proof(parse_proof(json.dumps(doc)), source, pins)
            assert result.bottom_line, result.findings
        more = ingest(sessions, 10, tag="after-restart")
        wait_for(lambda: drained(engine), 30, "new records to be anchored after the restart")
        health = healthz_of(port)
        assert health is not None and health["status"] == "ok"
        assert health["anchoring"]["halted"] is None
        assert health["chain"]["registry"] == deployment["registry"]
        clear_cache()
        with sessions() as session:
            after = build_proofs(session, more, None)
        assert all(p is not None and p["batch"]["seq"] >= 2 for p in after.values())
        engine.dispose()
    finally:
        assert stop_jianzheng(proc) == 0, log.read_text()[-3000:]


def test_chain_up_prints_one_json_line_and_chain_info_agrees(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "var")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "chain", "up"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert set(line) == {"rpc_url", "chain_id", "registry"}
        assert line["rpc_url"].endswith(env["JZ_CHAIN__DEV_PORT"])
        info = subprocess.run(
            [sys.executable, "-m", "service.cli", "chain", "info"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        assert json.loads(info.stdout) == line
        assert RpcClient(line["rpc_url"]).batch_count(line["registry"]) == 0
    finally:
        assert stop_jianzheng(proc) == 0


def test_chain_hardhat_deploys_with_roles_for_the_configured_service_account(
    tmp_path: Path,
) -> None:
    """`jianzheng chain hardhat`: a Hardhat node, the registry deployed, roles granted to the
    account of JZ_CHAIN__PRIVATE_KEY (here dev account #2, not the default), stopped cleanly."""
    from service.anchoring.devchain import DEV_ACCOUNTS, port_is_free

    other = DEV_ACCOUNTS[2]
    env = serve_env(tmp_path / "var")
    env["JZ_CHAIN__PRIVATE_KEY"] = other.private_key
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "chain", "hardhat", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["rpc_url"] == f"http://127.0.0.1:{port}"
        assert line["chain_id"] == 31337
        assert line["service_address"] == other.address
        client = RegistryClient(line["rpc_url"], line["registry"], other.private_key)
        assert client.has_role("ANCHORER_ROLE", other.address)
        assert client.has_role("REVOKER_ROLE", other.address)
        assert not client.has_role("ANCHORER_ROLE", DEV_ACCOUNTS[1].address)
        assert client.batch_count() == 0
    finally:
        assert stop_jianzheng(proc) == 0
    assert port_is_free(port)


@pytest.mark.postgres
def test_api_runs_several_processes_on_one_port_and_stops_cleanly(
    tmp_path: Path, empty_pg_url: str
) -> None:
    """`jianzheng api --workers 2` on an empty database: the schema is migrated once, two
    API processes answer on one port (SO_REUSEPORT), and SIGTERM stops them all with
    exit 0."""
    env = serve_env(tmp_path / "var")
    env["JZ_DATABASE__URL"] = empty_pg_url
    port = free_port()
    log = tmp_path / "api.log"
    proc = start_jianzheng(env, log, "api", "--port", str(port), "--workers", "2")
    try:
        wait_for(lambda: healthz_of(port) is not None, 60, "the API to answer")
        wait_for(lambda: len(api_children(proc.pid)) == 2, 30, "two API processes")
        answers = {httpx.get(f"http://127.0.0.1:{port}/healthz").status_code for _ in range(20)}
        assert answers == {200}
    finally:
        assert stop_jianzheng(proc) == 0, log.read_text()[-3000:]
    assert healthz_of(port) is None


@pytest.mark.postgres
def test_an_api_process_killed_is_replaced_and_the_others_keep_serving(
    tmp_path: Path, pg_url: str
) -> None:
    """One API process killed (as the kernel's OOM killer would) does not take
    `jianzheng api --workers 2` down: the other answers meanwhile and a new one starts."""
    env = serve_env(tmp_path / "var")
    env["JZ_DATABASE__URL"] = pg_url
    port = free_port()
    log = tmp_path / "api.log"
    proc = start_jianzheng(env, log, "api", "--port", str(port), "--workers", "2")
    try:
        wait_for(lambda: len(api_children(proc.pid)) == 2, 60, "two API processes")
        wait_for(lambda: healthz_of(port) is not None, 60, "the API to answer")
        victim = api_children(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        # Connections the kernel had queued on the dead process's socket are refused; new
        # ones reach the living process at once, well before any replacement is up.
        wait_for(lambda: healthz_of(port) is not None, 5, "the surviving process to answer")
        answers = {httpx.get(f"http://127.0.0.1:{port}/healthz").status_code for _ in range(20)}
        assert answers == {200}
        wait_for(
            lambda: len(api_children(proc.pid)) == 2 and victim not in api_children(proc.pid),
            60,
            "a replacement API process",
        )
        # the replacement serves too (it took its own SO_REUSEPORT socket)
        wait_for(lambda: "Application startup complete" in log.read_text().split(
            "starting another")[-1], 60, "the replacement to start serving")
        assert proc.poll() is None, log.read_text()[-3000:]
        assert "starting another" in log.read_text()
    finally:
        assert stop_jianzheng(proc) == 0, log.read_text()[-3000:]
