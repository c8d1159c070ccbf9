"""The FastAPI application: wiring only. Features live in routers under service/api/; the
runtime objects come from the composition root (service/state.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from service.anchoring.chaininfo import ChainInfo
from service.api import (
    audit,
    certificate,
    console,
    offline,
    ops,
    pki,
    public,
    records,
    registry,
    report_pdf,
    reports,
    uploads,
    warnings,
)
from service.api.gate import PublicGateMiddleware
from service.api.openapi import install_openapi
from service.api.problems import BodyLimitMiddleware, install_problem_handlers
from service.settings import Settings, get_settings
from service.state import BackgroundLoops, ServiceState, build_state
from service.storage.db import AsyncPgPool, libpq_conninfo

log = logging.getLogger(__name__)

#: Bytes of multipart framing allowed on top of `JZ_PUBLIC__MAX_VERIFY_BYTES`.
VERIFY_FRAMING = 64 * 1024

#: Every feature router. Public first: its routes are the hot path (QR scans) and FastAPI
#: tries routes in order; no other router has paths under /v/ or /api/v1/public/.
ROUTERS: tuple[APIRouter, ...] = (
    public.router,
    ops.router,
    reports.router,
    records.router,
    uploads.router,
    report_pdf.router,
    pki.router,
    audit.router,
    warnings.router,
    offline.router,
    certificate.router,
    registry.router,
    console.router,
)


def create_app(
    settings: Settings | None = None,
    *,
    chain: ChainInfo | None = None,
    state: ServiceState | None = None,
    start_worker: bool = False,
) -> FastAPI:
    """Build the app. `start_worker` runs the anchoring worker in a thread of this process."""
    settings = settings or get_settings()
    service_state = state or build_state(settings, chain)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loops = BackgroundLoops(service_state, anchoring=start_worker).start()
        if service_state.on_postgresql:
            # The report-code fast path's connections belong to this event loop.
            service_state.async_pool = AsyncPgPool(
                libpq_conninfo(service_state.engine), settings.database.pool_size
            )
        try:
            yield
        finally:
            loops.stop()
            pool, service_state.async_pool = service_state.async_pool, None
            if pool is not None:
                await pool.close()
            service_state.close()

    # Swagger UI and ReDoc from the package's own copies: the service runs on networks
    # without access to a CDN (a regulator's intranet), and /docs must still work there.
    app = FastAPIOffline(
        static_url="/docs-static",
        title="Jianzheng (见证) evidence service",
        version="1",
        summary="Report codes, signed report PDFs and anchored evidence",
        lifespan=lifespan,
    )
    app.state.jz = service_state
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.security.max_body_bytes,
        overrides={
            # only the PDF itself, not the JSON metadata route beside it
            "PUT /api/v1/reports/[^/]+/pdf": settings.security.max_pdf_bytes,
            # what the route reads, plus the multipart framing
            "POST /api/v1/public/verify": settings.public.max_verify_bytes + VERIFY_FRAMING,
            "PATCH /api/v1/uploads/[^/]+": 64 * 1024 * 1024,
        },
    )
    # outermost: a client over its limit is refused before anything reads its body
    app.add_middleware(PublicGateMiddleware, state=service_state)
    return app
