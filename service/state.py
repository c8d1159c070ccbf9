"""The composition root: every long-lived object of a service process, built in one place.

`build_state()` makes a `ServiceState` from the settings: the database engine and
sessions, the blob store, the chain the service anchors to, the per-process caches and the
components built on first use (the report signer, the public view cache). The app hands
it to every request (`service.api.deps`); nothing else keeps a module-level singleton.

`BackgroundLoops` starts and stops every thread a process runs besides its requests: the
anchoring worker (in `jianzheng serve`), the agency-notification delivery and the sweeper
of expired uploads. `create_app()`'s lifespan owns one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.anchoring.chaininfo import ChainInfo
from service.clock import SYSTEM_CLOCK, Clock
from service.domain.accounts import KeyInfo
from service.domain.public import ReportViews, build_report_views
from service.domain.public.untrusted import UntrustedWork, untrusted_work
from service.domain.reports import IssuanceCache
from service.domain.signing import ReportSigner
from service.domain.trust import load_extra_roots, platform_ca
from service.errors import IntegrityFault
from service.settings import Settings
from service.storage import loghash
from service.storage.blobs import BlobStore
from service.storage.db import AsyncPgPool, make_engine, make_sessionmaker, reader, upgrade
from service.storage.nonces import PurgeSchedule
from service.storage.ratelimit import SharedRateLimiter
from signer.qrkeys import QrKeyStore

log = logging.getLogger(__name__)

T = TypeVar("T")


class Once(Generic[T]):
    """A component built on first use, once per process, from any thread."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    value = self._value = self._build()
        return value

    @property
    def built(self) -> bool:
        return self._value is not None


@dataclass(eq=False)
class ServiceState:
    """What one service process runs on. Built by `build_state`; typed, no string keys."""

    settings: Settings
    engine: Engine
    #: Sessions for work that writes (on SQLite they begin IMMEDIATE).
    sessions: sessionmaker[Session]
    #: Sessions for read-only work (on SQLite they begin DEFERRED: no write lock).
    read_sessions: sessionmaker[Session]
    blobs: BlobStore
    chain: ChainInfo | None
    clock: Clock = SYSTEM_CLOCK
    #: Decrypted API keys by id (immutable facts only; activity is read per request).
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    #: Projects and regions report-code issuance knows without the database (fast path).
    issuance_cache: IssuanceCache = field(default_factory=IssuanceCache)
    #: When this process last purged expired nonces and idempotency answers.
    purge: PurgeSchedule = field(default_factory=PurgeSchedule)
    #: Public rate limit (token buckets per client, in the database: every process shares
    #: them).
    rate_limiter: SharedRateLimiter = field(init=False)
    #: Keys, TSA and stamp material for signing report PDFs.
    signer: Once[ReportSigner] = field(init=False)
    #: The QR-payload signing keys and their signed trust list (INTERFACE §7.5); the
    #: store reloads itself when `jianzheng ca qr-keys rotate` changes the list.
    qr_keys: Once[QrKeyStore] = field(init=False)
    #: The public page's checked views and their caches.
    views: Once[ReportViews] = field(init=False)
    #: Capped child processes for the checks of files sent to the public verify route.
    untrusted: Once[UntrustedWork] = field(init=False)
    #: One thread that validates freshly signed PDFs for the public view's verdict store.
    verdict_primer: Once[ThreadPoolExecutor] = field(init=False)
    #: Async PostgreSQL connections for the report-code fast path (set by the app's
    #: lifespan, inside the event loop that uses them).
    async_pool: AsyncPgPool | None = None

    def __post_init__(self) -> None:
        self.rate_limiter = SharedRateLimiter(
            self.engine, float(self.settings.public.rate_limit_per_minute)
        )
        self.qr_keys = Once(lambda: QrKeyStore(platform_ca(self.settings)))
        self.signer = Once(
            lambda: ReportSigner.from_settings(self.settings, qr_keys=self.qr_keys.get())
        )
        self.views = Once(
            lambda: build_report_views(
                self.settings, self.engine, self.read_sessions, self.blobs, self.chain
            )
        )
        self.verdict_primer = Once(
            lambda: ThreadPoolExecutor(1, thread_name_prefix="jz-verdict-prime")
        )
        self.untrusted = Once(lambda: untrusted_work(self.settings, self.signer.get()))

    @property
    def on_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def close(self) -> None:
        if self.verdict_primer.built:
            self.verdict_primer.get().shutdown(wait=False)
        self.rate_limiter.close()
        self.engine.dispose()


def check_startup(settings: Settings) -> None:
    """Start-up checks of what the settings point at (files, not syntax): refuse to start
    with every problem named, rather than fail at the first request that needs it."""
    problems: list[str] = []
    if settings.signing.trust_roots_file:
        try:
            load_extra_roots(settings.signing.trust_roots_file)
        except ValueError as exc:
            problems.append(f"JZ_SIGNING__TRUST_ROOTS_FILE: {exc}")
    if problems:
        raise IntegrityFault("unsafe_settings", "; ".join(problems), problems=problems)


def build_state(
    settings: Settings,
    chain: ChainInfo | None,
    *,
    migrate: bool = True,
    clock: Clock = SYSTEM_CLOCK,
) -> ServiceState:
    """The state of one process: checks, migrations (unless `migrate=False`), engine."""
    check_startup(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade(settings.database_url)
    engine = make_engine(
        settings.database_url, pool_size=settings.database.pool_size, echo=settings.database.echo
    )
    loghash.pin(engine, settings.evidence.hash)
    return ServiceState(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        read_sessions=make_sessionmaker(reader(engine)),
        blobs=BlobStore(settings.blob_dir),
        chain=chain,
        clock=clock,
    )


class _Stoppable(Protocol):
    def stop(self, timeout: float = ...) -> None: ...


class BackgroundLoops:
    """Every background thread of a process, started and stopped together.

    - the anchoring worker, when `anchoring` (`jianzheng serve`; `jianzheng worker` runs it
      in the foreground instead) and a chain is configured;
    - delivery of agency notifications, when a webhook is configured and
      `notify.run_delivery` (rows are claimed, so several processes never send twice);
    - the sweeper of expired uploads (every process may; each upload expires once).
    """

    def __init__(self, state: ServiceState, *, anchoring: bool = False) -> None:
        self.state = state
        self.anchoring = anchoring
        self._running: list[tuple[str, _Stoppable]] = []

    def start(self) -> BackgroundLoops:
        from service.anchoring.worker import start_worker_thread
        from service.domain.notify import DeliveryLoop, notifier_from_settings
        from service.domain.orphans import sweep_orphans
        from service.domain.uploads import sweep_expired
        from service.periodic import Periodic

        state, settings = self.state, self.state.settings
        if self.anchoring:
            if state.chain is None:
                log.error("no chain configured: the anchoring worker does not run")
            else:
                self._running.append(
                    ("anchoring", start_worker_thread(settings, state.engine, state.chain))
                )
        notifier = notifier_from_settings(settings.notify)
        if notifier is not None and settings.notify.run_delivery:
            loop = DeliveryLoop(
                state.sessions, notifier, settings.notify, clock=state.clock
            ).start()
            self._running.append(("notifications", loop))
        expire_after = timedelta(hours=settings.uploads.expire_after_h)
        sweeper = Periodic(
            "jz-upload-sweep",
            lambda: sweep_expired(
                state.sessions, settings.data_dir, expire_after, clock=state.clock
            ),
            settings.uploads.sweep_interval_s,
        ).start()
        self._running.append(("uploads", sweeper))
        uploads_cfg = settings.uploads
        if uploads_cfg.orphan_sweep_interval_s > 0:
            orphans = Periodic(
                "jz-orphan-sweep",
                lambda: sweep_orphans(
                    state.read_sessions, state.blobs, uploads_cfg.orphan_grace_h * 3600
                ),
                uploads_cfg.orphan_sweep_interval_s,
            ).start()
            self._running.append(("orphans", orphans))
        return self

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._running]

    def stop(self) -> None:
        while self._running:
            _name, loop = self._running.pop()
            loop.stop()
