"""Operations endpoints: liveness (`/healthz`) and Prometheus metrics (`/metrics`).

Metrics are read from the database at scrape time, so every API process reports
the same anchoring lag whichever process runs the worker.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.api.deps import SessionDep, StateDep
from service.domain.notify import STATUS_FAILED, STATUS_PENDING
from service.domain.uploads import STATUS_OPEN
from service.storage.models import Batch, KeyValue, Notification, Outbox, Upload

router = APIRouter(tags=["ops"])

#: service_state keys the anchoring worker maintains.
STATE_ANCHOR_FAILURES = "anchor_failures"
STATE_LAST_ERROR = "anchor_last_error"
STATE_WORKER_HEARTBEAT = "worker_heartbeat"
#: Set (non-empty) while the worker refuses to anchor because database and chain disagree.
STATE_HALTED = "anchor_halted"


def anchoring_status(session: Session) -> dict[str, Any]:
    now = time.time()
    pending, oldest = session.execute(
        select(func.count(Outbox.seq), func.min(Outbox.enqueued_at))
    ).one()
    unconfirmed = (
        session.scalar(select(func.count(Batch.seq)).where(Batch.status != "anchored")) or 0
    )
    last_seq = session.scalar(select(func.max(Batch.seq)).where(Batch.status == "anchored"))
    state = {kv.key: kv.value for kv in session.scalars(select(KeyValue)).all()}
    return {
        "pending_leaves": int(pending or 0),
        "oldest_pending_age_s": round(now - oldest, 3) if oldest is not None else 0.0,
        "unconfirmed_batches": int(unconfirmed),
        "last_anchored_seq": int(last_seq or 0),
        "anchor_failures": int(state.get(STATE_ANCHOR_FAILURES, "0")),
        "last_error": state.get(STATE_LAST_ERROR) or None,
        "halted": state.get(STATE_HALTED) or None,
        "worker_heartbeat_age_s": (
            round(now - float(state[STATE_WORKER_HEARTBEAT]), 3)
            if STATE_WORKER_HEARTBEAT in state
            else None
        ),
    }


@router.get("/healthz", summary="Liveness and anchoring lag")
def healthz(state: StateDep, session: SessionDep) -> dict[str, Any]:
    status = anchoring_status(session)
    return {
        # "degraded": records are still accepted, but nothing is anchored until resolved.
        "status": "degraded" if status["halted"] else "ok",
        "chain": state.chain.as_json() if state.chain else None,
        "anchoring": status,
    }


def housekeeping_status(session: Session, data_dir: Path) -> dict[str, float]:
    """What an operator alerts on besides anchoring (R16, R20): notifications for the
    supervision agencies not delivered, open uploads, and the data volume's free space."""
    counts = dict(
        session.execute(
            select(Notification.status, func.count(Notification.id))
            .where(Notification.status.in_((STATUS_PENDING, STATUS_FAILED)))
            .group_by(Notification.status)
        ).all()
    )
    uploads_open = session.scalar(
        select(func.count(Upload.id)).where(Upload.status == STATUS_OPEN)
    )
    try:
        usage = shutil.disk_usage(data_dir)
        free, total = float(usage.free), float(usage.total)
    except OSError:
        free = total = float("nan")
    return {
        "notifications_pending": float(counts.get(STATUS_PENDING, 0)),
        "notifications_failed": float(counts.get(STATUS_FAILED, 0)),
        "uploads_open": float(uploads_open or 0),
        "data_free_bytes": free,
        "data_total_bytes": total,
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
    ):
        Gauge(name, doc, registry=registry).set(status[key])
    Gauge(
        "jianzheng_anchor_halted",
        "1 while anchoring is halted because the database and the chain disagree",
        registry=registry,
    ).set(1 if status["halted"] else 0)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
