"""The FastAPI application: wiring only; features live in routers under service/api/."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.api.openapi import install_openapi
from service.api.problems import BodyLimitMiddleware, install_problem_handlers
from service.settings import Settings, get_settings
from service.storage.blobs import BlobStore
from service.storage.db import make_engine, make_sessionmaker, upgrade

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainInfo:
    """The chain the service anchors to (INTERFACE §6 `jianzheng chain info`)."""

    rpc_url: str
    chain_id: int
    registry: str

    def as_json(self) -> dict[str, Any]:
        return {"rpc_url": self.rpc_url, "chain_id": self.chain_id, "registry": self.registry}


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    chain: ChainInfo | None
    #: Long-lived helpers routers attach (worker handle, caches, signer, ...).
    extras: dict[str, Any] = field(default_factory=dict)


def build_state(settings: Settings, chain: ChainInfo | None, *, migrate: bool = True) -> AppState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade(settings.database_url)
    engine = make_engine(
        settings.database_url, pool_size=settings.database.pool_size, echo=settings.database.echo
    )
    return AppState(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        blobs=BlobStore(settings.blob_dir),
        chain=chain,
    )


def create_app(
    settings: Settings | None = None,
    *,
    chain: ChainInfo | None = None,
    state: AppState | None = None,
    start_worker: bool = False,
) -> FastAPI:
    """Build the app. `start_worker` runs the anchoring worker in a thread of this process."""
    settings = settings or get_settings()
    app_state = state or build_state(settings, chain)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if start_worker:
            from service.anchoring.worker import start_worker_thread

            worker = start_worker_thread(app_state)
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            app_state.engine.dispose()

    # Swagger UI and ReDoc from the package's own copies: the service runs on networks
    # without access to a CDN (a regulator's intranet), and /docs must still work there.
    app = FastAPIOffline(
        static_url="/docs-static",
        title="Jianzheng (见证) evidence service",
        version="1",
        summary="Report codes, sealed report PDFs and anchored evidence",
        lifespan=lifespan,
    )
    app.state.jz = app_state
    install_problem_handlers(app)
    for router in _routers():
        app.include_router(router)
    install_openapi(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.security.max_body_bytes,
        overrides={
            "PUT /api/v1/reports/": settings.security.max_pdf_bytes,
            "POST /api/v1/public/verify": settings.security.max_pdf_bytes,
            "PATCH /api/v1/uploads/": 64 * 1024 * 1024,
        },
    )
    return app


def _routers() -> list[Any]:
    """Every feature router; each module exposes `router`."""
    import importlib

    names = [
        # public first: its routes are the hot path (QR scans) and FastAPI tries routes in
        # order; no other router has paths under /v/ or /api/v1/public/
        "service.api.public",
        "service.api.ops",
        "service.api.reports",
        "service.api.records",
        "service.api.sealing",
        "service.api.pki",
        "service.api.audit",
    ]
    routers = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # feature not built yet
            raise
        routers.append(module.router)
    return routers
