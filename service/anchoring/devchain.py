"""Local development chains: a Hardhat 2 node (tests) or anvil (persistent dev chain).

Both run from chain-dev/node_modules (``npm ci`` in chain-dev/), fully offline, bound to
127.0.0.1. The node binary is started directly (never through npx, whose PID is not the node's),
so :meth:`NodeProcess.stop` ends exactly the process it started.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address

from service.anchoring.contract import (
    DEPLOY_GAS_LIMIT,
    ChainError,
    ChainRpc,
    RegistryClient,
    load_artifact,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAIN_DEV_DIR = REPO_ROOT / "chain-dev"
HARDHAT_BIN = CHAIN_DEV_DIR / "node_modules" / ".bin" / "hardhat"
HARDHAT_CONFIG = CHAIN_DEV_DIR / "hardhat.config.js"
DEV_CHAIN_ID = 31337
LOOPBACK = "127.0.0.1"
#: How long a node may take to answer JSON-RPC after start (Hardhat ~1-2 s, anvil ~0.2 s).
STARTUP_TIMEOUT = 30.0
#: How long stop() waits after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0
#: Attempts with a fresh free port when the chosen one was taken in the meantime.
PORT_ATTEMPTS = 3


class DevChainError(ChainError):
    """A development node could not be started or a deployment failed."""

    code = "devchain_failed"


@dataclass(frozen=True)
class DevAccount:
    address: str
    private_key: str


#: Accounts #0..#3 of the well-known Hardhat/anvil mnemonic
#: "test test test test test test test test test test test junk" (m/44'/60'/0'/0/i).
#: Public knowledge: for local chains only. #0 deploys and administers the registry; #1 is the
#: service account (ANCHORER_ROLE + REVOKER_ROLE); #2 and #3 hold no role (tests use them).
DEV_ACCOUNTS: tuple[DevAccount, ...] = (
    DevAccount("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
               "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    DevAccount("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
               "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    DevAccount("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
               "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    DevAccount("0x90F79bf6EB2c4f870365E785982E1f101E93b906",
               "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
)
DEPLOYER = DEV_ACCOUNTS[0]
SERVICE_ACCOUNT = DEV_ACCOUNTS[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound now (nothing else listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the nodes themselves use it: connections of a node that just
        # stopped linger in TIME_WAIT for a minute and must not make the port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def rpc_chain_id(rpc_url: str, timeout: float = 2.0) -> int | None:
    """``eth_chainId`` (one attempt, no retries), or None if the node does not answer (yet)
    or answers something that is not a chain id."""
    try:
        return ChainRpc(rpc_url, timeout=timeout, retries=0).chain_id()
    except (ChainError, ValueError):
        return None


class NodeProcess:
    """A local chain node child process. Use as a context manager or call stop()."""

    def __init__(self, argv: list[str], port: int, *, cwd: Path, name: str) -> None:
        self.argv = argv
        self.port = port
        self.name = name
        self.rpc_url = f"http://{LOOPBACK}:{port}"
        self.chain_id: int | None = None
        self._cwd = cwd
        self._log = tempfile.TemporaryFile(prefix=f"jz-{name}-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = STARTUP_TIMEOUT) -> NodeProcess:
        """Start the node and wait until it answers JSON-RPC; raises DevChainError."""
        # Otherwise another node already listening there would pass for this one.
        if not port_is_free(self.port):
            raise DevChainError(f"port {self.port} on {LOOPBACK} is already in use")
        env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "NO_COLOR": "1"}
        try:
            self._proc = subprocess.Popen(
                self.argv, cwd=self._cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise DevChainError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                output = self.output()
                self.stop()
                raise DevChainError(
                    f"{self.name} exited with status {self._proc.returncode}: {output[-2000:]}"
                )
            self.chain_id = rpc_chain_id(self.rpc_url, timeout=1.0)
            if self.chain_id is not None and self._proc.poll() is None:
                return self
            time.sleep(0.05)
        output = self.output()
        self.stop()
        raise DevChainError(f"{self.name} did not answer on {self.rpc_url} within {timeout:g} s: "
                            f"{output[-2000:]}")

    def output(self) -> str:
        """What the node printed so far (its log)."""
        if self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        self._log.seek(0, os.SEEK_END)
        return text

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate the node (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
        atexit.unregister(self.stop)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _start_with_ports(
    make_argv: Any, port: int | None, cwd: Path, name: str
) -> NodeProcess:
    attempts = 1 if port is not None else PORT_ATTEMPTS
    last: DevChainError | None = None
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        node = NodeProcess(make_argv(chosen), chosen, cwd=cwd, name=name)
        try:
            return node.start()
        except DevChainError as exc:  # e.g. the port was taken between probe and bind
            last = exc
    assert last is not None
    raise last


def start_hardhat(port: int | None = None) -> NodeProcess:
    """Start a Hardhat 2 node (chain id 31337, automine) on 127.0.0.1:``port`` (free port if
    None); returns once it answers JSON-RPC."""
    if not HARDHAT_BIN.exists():
        raise DevChainError(f"{HARDHAT_BIN} not found: run `npm ci` in {CHAIN_DEV_DIR}")
    return _start_with_ports(
        lambda p: [str(HARDHAT_BIN), "--config", str(HARDHAT_CONFIG), "node",
                   "--hostname", LOOPBACK, "--port", str(p)],
        port, CHAIN_DEV_DIR, "hardhat",
    )


def anvil_binary() -> Path:
    """The anvil executable shipped by the @foundry-rs/anvil npm package."""
    found = sorted((CHAIN_DEV_DIR / "node_modules" / "@foundry-rs").glob("*/bin/anvil"))
    if not found:
        raise DevChainError(f"anvil not found under {CHAIN_DEV_DIR}/node_modules/@foundry-rs: "
                            f"run `npm ci` in {CHAIN_DEV_DIR}")
    return found[0]


def start_anvil(port: int | None = None, state_file: str | Path | None = None) -> NodeProcess:
    """Start anvil (chain id 31337, cancun, automine) on 127.0.0.1:``port``. With
    ``state_file`` the chain is loaded from it at start and saved to it every second and on
    exit, so it persists across restarts."""
    binary = anvil_binary()
    extra: list[str] = []
    if state_file is not None:
        path = Path(state_file).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = ["--state", str(path), "--state-interval", "1"]
    return _start_with_ports(
        lambda p: [str(binary), "--host", LOOPBACK, "--port", str(p),
                   "--chain-id", str(DEV_CHAIN_ID), "--hardfork", "cancun", *extra],
        port, CHAIN_DEV_DIR, "anvil",
    )


def deploy_registry(
    rpc_url: str, deployer_key: str, service_address: str, *, timeout: float = 60.0,
    revoker_address: str | None = None,
) -> str:
    """Deploy EvidenceRegistry from the committed artifact: the deployer becomes admin,
    ``service_address`` gets ANCHORER_ROLE, and REVOKER_ROLE unless ``revoker_address``
    names another account for it. Returns the checksum address.
    Checks that the deployed code is exactly the artifact's ``deployedBytecode``."""
    artifact = load_artifact()
    deployer = Account.from_key(deployer_key)
    service = to_checksum_address(service_address)
    revoker = to_checksum_address(revoker_address or service_address)
    # Reuse the client's RPC plumbing and signing; the "registry" address is a placeholder
    # until the contract exists.
    client = RegistryClient(rpc_url, deployer.address, deployer_key, artifact=artifact)
    factory = client.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx: dict[str, Any] = {
        "chainId": client.chain_id(),
        "nonce": client.pending_nonce(deployer.address),
        "value": 0,
        "gas": DEPLOY_GAS_LIMIT,
        "data": factory.constructor(deployer.address, service, revoker).data_in_transaction,
        **client.fees().as_tx_fields(),
    }
    signed = deployer.sign_transaction(tx)
    tx_hash = client.send_raw(bytes(signed.raw_transaction))
    receipt = client.wait_receipt(tx_hash, timeout=timeout)
    if receipt.contract_address is None:
        raise DevChainError(f"deployment {tx_hash} created no contract")
    code = client.rpc("eth_getCode", [receipt.contract_address, "latest"])
    if str(code).lower() != str(artifact["deployedBytecode"]).lower():
        raise DevChainError(f"code at {receipt.contract_address} differs from the artifact")
    return receipt.contract_address
