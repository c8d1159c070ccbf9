"""What an operator alerts on besides anchoring (R16, R20)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.domain.notify import STATUS_FAILED, STATUS_PENDING
from service.domain.uploads import STATUS_OPEN
from service.storage.models import Notification, Upload


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
