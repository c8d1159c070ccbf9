"""Operations endpoints: liveness (`/healthz`) and Prometheus metrics (`/metrics`).

Metrics are read from the database at scrape time, so every API process reports
the same anchoring lag whichever process runs the worker.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.anchoring.status import anchoring_status, chain_roles
from service.api.deps import SessionDep, StateDep
from service.api.routing import DocumentedRoute
from service.domain.operations import housekeeping_status

router = APIRouter(route_class=DocumentedRoute, tags=["ops"])


@router.get("/healthz", summary="Liveness and anchoring lag")
def healthz(state: StateDep, session: SessionDep) -> dict[str, Any]:
    status = anchoring_status(session)
    return {
        # "degraded": records are still accepted, but nothing is anchored until resolved.
        "status": "degraded" if status["halted"] else "ok",
        # The chain's public facts only: its RPC URL may carry a credential.
        "chain": (
            {"chain_id": state.chain.chain_id, "registry": state.chain.registry}
            if state.chain
            else None
        ),
        "anchoring": status,
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(session: SessionDep, state: StateDep) -> Response:
    status = anchoring_status(session)
    registry = CollectorRegistry()
    house = housekeeping_status(session, state.settings.data_dir)
    for name, doc, key in (
        (
            "jianzheng_notifications_pending",
            "Agency notifications (nonconforming results) not yet delivered",
            "notifications_pending",
        ),
        (
            "jianzheng_notifications_failed",
            "Agency notifications given up after the last attempt",
            "notifications_failed",
        ),
        ("jianzheng_uploads_open", "Resumable uploads still open", "uploads_open"),
        ("jianzheng_data_free_bytes", "Free bytes on the data volume", "data_free_bytes"),
        ("jianzheng_data_total_bytes", "Size of the data volume", "data_total_bytes"),
    ):
        Gauge(name, doc, registry=registry).set(house[key])
    for name, doc, key in (
        ("jianzheng_pending_leaves", "Accepted leaves not yet in a batch", "pending_leaves"),
        (
            "jianzheng_oldest_pending_age_seconds",
            "Age of the oldest leaf not yet in a batch",
            "oldest_pending_age_s",
        ),
        (
            "jianzheng_unconfirmed_batches",
            "Batches built but not yet anchored",
            "unconfirmed_batches",
        ),
        (
            "jianzheng_last_anchored_seq",
            "Sequence number of the newest anchored batch",
            "last_anchored_seq",
        ),
        ("jianzheng_anchor_failures_total", "Failed anchoring attempts", "anchor_failures"),
        (
            "jianzheng_anchor_reorgs_total",
            "Times anchors were found dropped or moved by a chain reorganisation",
            "reorgs",
        ),
    ):
        Gauge(name, doc, registry=registry).set(status[key])
    Gauge(
        "jianzheng_anchor_halted",
        "1 while anchoring is halted because the database and the chain disagree",
        registry=registry,
    ).set(1 if status["halted"] else 0)
    Gauge(
        "jianzheng_anchor_role_missing",
        "1 while the anchoring key lacks ANCHORER_ROLE (nothing is anchored)",
        registry=registry,
    ).set(1 if status["role_missing"] else 0)
    roles = chain_roles(session)
    if roles is not None:  # as the worker last read them from the registry
        for key, role, name in (
            ("anchorer", "ANCHORER_ROLE", "jianzheng_chain_anchorer_has_role"),
            ("revoker", "REVOKER_ROLE", "jianzheng_chain_revoker_has_role"),
        ):
            Gauge(name, f"1 if the {key} key holds {role}", registry=registry).set(
                1 if roles.get(key, {}).get(role) else 0
            )
        Gauge(
            "jianzheng_chain_key_is_admin",
            "1 if a configured chain key holds the registry's admin role (it should not)",
            registry=registry,
        ).set(1 if any(v.get("DEFAULT_ADMIN_ROLE") for v in roles.values()) else 0)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
