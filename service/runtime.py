"""Process entry points behind `jianzheng serve | worker | chain up | chain info | ca roots`.

With no chain configured (`JZ_CHAIN__RPC_URL` empty) the service uses a local dev chain:
anvil on `127.0.0.1:{chain.dev_port}` whose whole state (blocks, receipts, logs, storage)
is saved to `{data_dir}/chain/state.json` every second and on exit, and reloaded at
start, so every proof issued before a restart stays verifiable after it. The registry is
deployed once and remembered in `{data_dir}/chain/deployment.json`. If that state is ever
lost, the worker notices that the database's batches are not on the chain and refuses to
anchor (loudly, and in /healthz) instead of starting a second, contradicting history.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from eth_account import Account

from service.anchoring.chaininfo import ChainInfo
from service.errors import BadRequest, IntegrityFault, NotFound, Unavailable
from service.settings import Settings, get_settings
from service.storage.db import upgrade

if TYPE_CHECKING:
    from service.state import ServiceState

log = logging.getLogger(__name__)

DEPLOYMENT_FILE = "deployment.json"
#: `jianzheng api` replaces an API process that died, unless more than this many died
#: within RESTART_WINDOW_S seconds (then something is wrong beyond one request).
MAX_RESTARTS_PER_WINDOW = 5
RESTART_WINDOW_S = 60
STATE_FILE = "state.json"


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _service_address(settings: Settings) -> str:
    """The anchoring account (ANCHORER_ROLE)."""
    return str(Account.from_key(settings.chain.anchorer_secret()).address)


def _revoker_address(settings: Settings) -> str:
    return str(Account.from_key(settings.chain.revoker_secret()).address)


def _deployment_path(settings: Settings) -> Path:
    return settings.chain_dir / DEPLOYMENT_FILE


def _read_deployment(settings: Settings) -> dict[str, Any] | None:
    path = _deployment_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IntegrityFault("bad_deployment_file", f"{path}: {exc}") from exc
    return data if isinstance(data, dict) else None


def _has_code(rpc_url: str, address: str) -> bool:
    from service.anchoring.contract import ChainRpc

    return ChainRpc(rpc_url).has_code(address)


def dev_chain(settings: Settings, *, start: bool) -> tuple[ChainInfo, Any | None]:
    """The local dev chain: reuse one answering on `dev_port`, else start anvil (if `start`);
    deploy the registry once. Returns (ChainInfo, the NodeProcess we started or None)."""
    from service.anchoring.devchain import DEPLOYER, deploy_registry, rpc_chain_id, start_anvil

    rpc_url = f"http://127.0.0.1:{settings.chain.dev_port}"
    node = None
    chain_id = rpc_chain_id(rpc_url, timeout=2.0)
    if chain_id is None:
        if not start:
            raise Unavailable(
                "dev_chain_not_running",
                f"no dev chain answers at {rpc_url}: run `jianzheng chain up` or `jianzheng serve`",
            )
        settings.chain_dir.mkdir(parents=True, exist_ok=True)
        node = start_anvil(settings.chain.dev_port, settings.chain_dir / STATE_FILE)
        chain_id = node.chain_id
        assert chain_id is not None
        log.info("dev chain (anvil) started at %s, state in %s", rpc_url, settings.chain_dir)
    try:
        deployment = _read_deployment(settings)
        deployment = deployment or {}
        registry = str(deployment.get("registry", ""))
        same_chain = int(deployment.get("chain_id", 0) or 0) == chain_id
        if registry and same_chain and _has_code(rpc_url, registry):
            return ChainInfo(rpc_url, chain_id, registry), node
        if registry:
            log.critical(
                "the dev chain at %s has no registry at %s: its state (%s) was lost or replaced. "
                "Deploying a new registry; batches anchored before cannot be verified on it and "
                "the anchoring worker will refuse to continue a database that holds them.",
                rpc_url,
                registry,
                settings.chain_dir / STATE_FILE,
            )
        registry = deploy_registry(
            rpc_url, DEPLOYER.private_key, _service_address(settings),
            revoker_address=_revoker_address(settings),
        )
        settings.chain_dir.mkdir(parents=True, exist_ok=True)
        _deployment_path(settings).write_text(
            json.dumps(
                {
                    "rpc_url": rpc_url,
                    "chain_id": chain_id,
                    "registry": registry,
                    "deployer": DEPLOYER.address,
                    "service_address": _service_address(settings),
                    "deployed_at": int(time.time()),
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        log.info("registry deployed at %s on the dev chain", registry)
        return ChainInfo(rpc_url, chain_id, registry), node
    except BaseException:
        if node is not None:
            node.stop()
        raise


def configured_chain(settings: Settings) -> ChainInfo:
    """The chain named by JZ_CHAIN__* (production or an external dev node)."""
    cfg = settings.chain
    if not cfg.registry:
        raise IntegrityFault(
            "chain_not_configured", "JZ_CHAIN__REGISTRY is required with JZ_CHAIN__RPC_URL"
        )
    chain_id = cfg.chain_id
    if chain_id is None:
        from service.anchoring.devchain import rpc_chain_id

        chain_id = rpc_chain_id(cfg.rpc_url, timeout=5.0)
        if chain_id is None:
            raise Unavailable(
                "chain_unreachable",
                f"cannot read the chain id from {cfg.rpc_url}; set JZ_CHAIN__CHAIN_ID to start "
                "while the chain is down",
            )
    return ChainInfo(cfg.rpc_url, chain_id, cfg.registry)


def resolve_chain(settings: Settings, *, start_dev: bool) -> tuple[ChainInfo, Any | None]:
    if settings.chain.rpc_url:
        return configured_chain(settings), None
    return dev_chain(settings, start=start_dev)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(host: str = "127.0.0.1", port: int = 8000) -> int:
    """API + anchoring worker (thread) on the configured or embedded defaults."""
    import uvicorn

    from service.app import create_app
    from service.state import build_state

    settings = get_settings()
    _configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    chain, node = resolve_chain(settings, start_dev=True)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler that was
    # installed before it; make that an orderly exit so the dev chain below is stopped (and
    # writes its state) instead of being orphaned by a default-action death.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        state = build_state(settings, chain)
        app = create_app(settings, state=state, start_worker=settings.anchor.run_in_serve)
        _warm_sandbox(state)
        freeze_startup_heap()
        # forwarded headers are read by service.api.gate (JZ_PUBLIC__TRUSTED_PROXIES)
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(),
                    proxy_headers=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        if node is not None:
            node.stop()
    return 0


def freeze_startup_heap() -> None:
    """Take what start-up built (modules, the app, its caches: some 250,000 objects) out of
    the cyclic garbage collector's generations (`gc.freeze`).

    Otherwise every full collection walks all of it while the event loop stands still:
    0.6 s and 1.2 s pauses were seen in an API process under load (issue 17), each one a
    latency spike for every request in flight. Objects made afterwards are collected as
    usual; the frozen ones live as long as the process anyway."""
    gc.collect()
    gc.freeze()


def _warm_sandbox(state: ServiceState) -> None:
    """Start the public verify route's sandbox (its fork server, the signer it needs) in
    the background, so that the first file someone sends is not the one that waits."""

    def warm() -> None:
        try:
            state.untrusted.get().sandbox.warm()
            freeze_startup_heap()  # what the warm-up loaded into this process
            log.info("verify sandbox ready")
        except Exception:  # noqa: BLE001 - the first request will say what is wrong
            log.exception("the verify sandbox could not be started ahead")

    threading.Thread(target=warm, name="jz-sandbox-warm", daemon=True).start()


def _api_chain(settings: Settings) -> ChainInfo | None:
    """The chain API processes read from: configured, or the dev chain's deployment file;
    never started here (run `jianzheng chain up` or `jianzheng serve` for that)."""
    if settings.chain.rpc_url:
        return configured_chain(settings)
    deployment = _read_deployment(settings)
    if not deployment or not deployment.get("registry"):
        log.warning("no chain configured and no dev chain deployment: anchors are not shown")
        return None
    return ChainInfo(
        str(deployment["rpc_url"]), int(deployment["chain_id"]), str(deployment["registry"])
    )


def _api_process(host: str, port: int, chain: ChainInfo | None) -> None:
    """One API process on its own SO_REUSEPORT socket: the kernel spreads connections
    evenly over the processes (processes sharing one accepting socket, as with
    `uvicorn --workers`, were seen to split 64 connections 62/2)."""
    import socket

    import uvicorn

    from service.app import create_app
    from service.state import build_state

    settings = get_settings()
    _configure_logging(settings)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    state = build_state(settings, chain, migrate=False)
    app = create_app(settings, state=state)
    _warm_sandbox(state)
    freeze_startup_heap()
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level=settings.log_level.lower(),
        backlog=2048,
        proxy_headers=False,  # forwarded headers: service.api.gate (JZ_PUBLIC__TRUSTED_PROXIES)
    )
    uvicorn.Server(config).run(sockets=[sock])


def api(host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> int:
    """Stateless API processes only (no anchoring worker, no dev chain started): the
    deployment for several processes or machines, with `jianzheng worker` beside them."""
    import multiprocessing

    settings = get_settings()
    _configure_logging(settings)
    if workers < 1:
        raise BadRequest("bad_workers", "--workers must be at least 1")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)  # once, before the processes start
    chain = _api_chain(settings)
    ctx = multiprocessing.get_context("spawn")

    def start(i: int) -> Any:
        proc = ctx.Process(target=_api_process, args=(host, port, chain), name=f"jianzheng-api-{i}")
        proc.start()
        return proc

    procs = [start(i) for i in range(workers)]
    stop = threading.Event()
    _stop_on_signals(stop)
    log.info("%d API processes on http://%s:%d", workers, host, port)
    restarts: list[float] = []
    try:
        while not stop.is_set():
            stop.wait(0.5)
            for i, proc in enumerate(procs):
                if proc.is_alive() or stop.is_set():
                    continue
                # One process died (e.g. killed for memory): the others keep serving on
                # the shared port, and it is replaced, unless processes die in a loop.
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
                if len(restarts) > MAX_RESTARTS_PER_WINDOW:
                    log.critical("API processes keep dying (%d in %d s); stopping",
                                 len(restarts), RESTART_WINDOW_S)
                    stop.set()
                    break
                log.error("API process %s ended (exit code %s); starting another",
                          proc.name, proc.exitcode)
                procs[i] = start(i)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn finishes requests in flight
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    failed = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed or len(restarts) > MAX_RESTARTS_PER_WINDOW else 0


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_worker() -> int:
    """The anchoring worker alone, in the foreground (one leader at a time; others wait)."""
    from service.anchoring.worker import AnchorWorker
    from service.state import build_state

    settings = get_settings()
    _configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    chain, node = resolve_chain(settings, start_dev=False)
    try:
        state = build_state(settings, chain)
        stop = threading.Event()
        _stop_on_signals(stop)
        worker = AnchorWorker(settings, state.engine, chain)
        worker.run(stop)
        state.engine.dispose()
    finally:
        if node is not None:
            node.stop()
    return 0


def chain_up() -> int:
    """Run the local dev chain in the foreground; print {rpc_url, chain_id, registry} once."""
    settings = get_settings()
    _configure_logging(settings)
    if settings.chain.rpc_url:
        raise BadRequest(
            "chain_configured", "JZ_CHAIN__RPC_URL is set: there is no dev chain to run"
        )
    stop = threading.Event()
    _stop_on_signals(stop)
    chain, node = dev_chain(settings, start=True)
    sys.stdout.write(json.dumps(chain.as_json()) + "\n")
    sys.stdout.flush()
    if node is None:
        log.warning("a dev chain was already running at %s; not starting another", chain.rpc_url)
        return 0
    try:
        while not stop.is_set() and node.running():
            stop.wait(0.5)
    finally:
        node.stop()  # SIGTERM: anvil writes its state file on the way out
    return 0


def chain_hardhat(port: int | None = None) -> int:
    """A throwaway Hardhat node (in memory) with the registry deployed, roles granted to the
    configured service account; prints {rpc_url, chain_id, registry} once, then runs in the
    foreground until interrupted. For tests and experiments; `serve` uses the persistent
    anvil chain instead."""
    from service.anchoring.devchain import DEPLOYER, DEV_CHAIN_ID, deploy_registry, start_hardhat

    settings = get_settings()
    _configure_logging(settings)
    stop = threading.Event()
    _stop_on_signals(stop)
    node = start_hardhat(port)
    try:
        registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, _service_address(settings))
        info = {
            "rpc_url": node.rpc_url,
            "chain_id": DEV_CHAIN_ID,
            "registry": registry,
            "service_address": _service_address(settings),
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.is_set() and node.running():
            stop.wait(0.5)
    finally:
        node.stop()
    return 0


def chain_info() -> ChainInfo:
    """The chain the service uses (without starting anything)."""
    settings = get_settings()
    if settings.chain.rpc_url:
        return configured_chain(settings)
    deployment = _read_deployment(settings)
    if not deployment or not deployment.get("registry"):
        raise NotFound(
            "dev_chain_not_deployed",
            f"no dev chain deployment in {_deployment_path(settings)}: "
            "run `jianzheng serve` or `jianzheng chain up` first",
        )
    return ChainInfo(
        str(deployment["rpc_url"]), int(deployment["chain_id"]), str(deployment["registry"])
    )


def chain_key_roles(info: ChainInfo) -> dict[str, Any]:
    """`jianzheng chain info --roles`: for the anchorer and the revoker key, its address
    and whether it holds DEFAULT_ADMIN_ROLE, ANCHORER_ROLE, REVOKER_ROLE on the registry
    (read from the chain now; the worker's last reading is on /metrics)."""
    from service.anchoring.contract import RegistryClient
    from service.anchoring.worker import key_roles

    cfg = get_settings().chain
    return {
        name: key_roles(RegistryClient(info.rpc_url, info.registry, secret))
        for name, secret in (("anchorer", cfg.anchorer_secret()),
                             ("revoker", cfg.revoker_secret()))
    }


def ca_roots_pem() -> str:
    """PEM certificates a verifier should trust for report signatures and timestamps."""
    from service.domain.trust import trust_roots_pem

    return trust_roots_pem(get_settings()).decode("ascii")


def qr_keys_command(
    action: str, kid: str | None = None, grace_s: int | None = None, *, algorithm: str = "ES256"
) -> object:
    """`jianzheng ca qr-keys list | rotate | remove KID` and `jianzheng ca trust-list`: the
    QR-signing keys of INTERFACE §7.5 (signer.qrkeys; docs/offline-qr.md). Running service
    processes notice the re-signed list by its file stamp and sign with the new key."""
    from service.domain.trust import platform_ca
    from signer.qrkeys import ROTATION_GRACE_S, QrKeyStore

    store = QrKeyStore(platform_ca(get_settings()))
    if action == "trust-list":
        return store.trust_list_bytes().decode("utf-8")
    if action == "rotate":
        new = store.rotate(
            grace_s=ROTATION_GRACE_S if grace_s is None else grace_s, algorithm=algorithm
        )
        return {"signing_kid": new, "keys": store.keys()}
    if action == "remove":
        assert kid is not None
        store.remove(kid)
    return {"signing_kid": store.active().kid.hex(), "keys": store.keys()}
