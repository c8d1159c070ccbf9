"""Durable notifications for the local supervision agency (R12), with a pluggable notifier.

A notification is a row written in the same transaction as the fact it reports (for
example a nonconforming result), so nothing acknowledged is lost. A delivery loop
claims due rows, hands each to a `Notifier` and retries failures with exponential
backoff until `max_attempts`, after which the row is `failed` (still visible to
auditors). Rows are claimed by a compare-and-set on `next_attempt_at`, so several API
processes may run the loop; a delivery may repeat only if a process dies between
sending and recording, which is why every delivery carries its stable
`X-JZ-Notification-Id` for the receiver to deduplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.clock import SYSTEM_CLOCK, Clock, rfc3339, utc_now
from service.domain.evidence import new_record_id
from service.periodic import Periodic
from service.settings import NotifySettings
from service.storage.models import Notification

log = logging.getLogger(__name__)

STATUS_PENDING = "pending"
STATUS_DELIVERED = "delivered"
STATUS_FAILED = "failed"
#: Rows one pass of the delivery loop handles at most.
DELIVERY_BATCH = 50
#: Longest error text kept on a row.
MAX_ERROR_CHARS = 500


class DeliveryError(Exception):
    """The receiver did not accept the notification (retry later)."""


class Notifier(Protocol):
    def send(self, notification_id: str, kind: str, payload: bytes) -> None:
        """Deliver one notification or raise DeliveryError."""


class WebhookNotifier:
    """POSTs the JSON payload; any 2xx answer counts as delivered."""

    def __init__(self, url: str, *, secret: str = "", timeout_s: float = 10.0) -> None:
        self.url = url
        self._secret = secret.encode("utf-8")
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def send(self, notification_id: str, kind: str, payload: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-JZ-Event": kind,
            "X-JZ-Notification-Id": notification_id,
        }
        if self._secret:
            headers["X-JZ-Webhook-Signature"] = hmac.new(
                self._secret, payload, hashlib.sha256
            ).hexdigest()
        try:
            resp = self._client.post(self.url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"HTTP {resp.status_code}")


def notifier_from_settings(settings: NotifySettings) -> Notifier | None:
    if not settings.webhook_url:
        return None
    return WebhookNotifier(
        settings.webhook_url,
        secret=settings.webhook_secret.get_secret_value(),
        timeout_s=settings.timeout_s,
    )


def enqueue(
    session: Session, *, kind: str, institution: str, payload: Mapping[str, Any]
) -> Notification:
    """Add a notification to the caller's transaction; it is sent after commit."""
    notification_id = new_record_id()
    body = {"notification_id": notification_id, "event": kind, **payload}
    region = payload.get("agency_region")
    row = Notification(
        id=notification_id,
        kind=kind,
        institution=institution,
        agency_region=region if isinstance(region, str) and len(region) == 6 else None,
        payload=json.dumps(body, ensure_ascii=False, sort_keys=True),
        status=STATUS_PENDING,
        attempts=0,
        next_attempt_at=time.time(),
        created_at=utc_now(),
    )
    session.add(row)
    return row


def list_notifications(
    session: Session,
    *,
    region_prefix: str | None,
    kind: str | None = None,
    after: str = "",
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Notifications oldest first, with their delivery state: those for the supervision
    agencies whose region codes start with `region_prefix` (None: every one)."""
    query = select(Notification).where(Notification.id > after)
    if region_prefix is not None:
        query = query.where(Notification.agency_region.startswith(region_prefix))
    if kind is not None:
        query = query.where(Notification.kind == kind)
    rows = session.scalars(query.order_by(Notification.id).limit(limit)).all()
    return [
        {
            "id": r.id,
            "event": r.kind,
            "institution": r.institution,
            "agency_region": r.agency_region,
            "status": r.status,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "created_at": rfc3339(r.created_at),
            "delivered_at": rfc3339(r.delivered_at) if r.delivered_at else None,
            "payload": json.loads(r.payload),
        }
        for r in rows
    ]


def backoff_s(attempts: int, settings: NotifySettings) -> float:
    """Delay before attempt `attempts + 1`: initial * 2^(attempts-1), capped."""
    exponent = min(max(attempts - 1, 0), 30)
    return float(min(settings.retry_initial_s * (2**exponent), settings.retry_max_s))


def deliver_due(
    sessions: sessionmaker[Session],
    notifier: Notifier,
    settings: NotifySettings,
    *,
    now: float | None = None,
    limit: int = DELIVERY_BATCH,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """One pass: deliver every due notification; returns how many were delivered.
    "Now" (what is due, when a retry is next due) is read from `clock` unless `now` is
    given for the pass."""
    now = clock.time() if now is None else now
    lease = settings.timeout_s + 30.0
    delivered = 0
    with sessions() as session:
        due = session.execute(
            select(Notification.id)
            .where(Notification.status == STATUS_PENDING, Notification.next_attempt_at <= now)
            .order_by(Notification.next_attempt_at)
            .limit(limit)
        ).scalars().all()
    for notification_id in due:
        with sessions() as session:
            claimed = session.execute(
                update(Notification)
                .where(
                    Notification.id == notification_id,
                    Notification.status == STATUS_PENDING,
                    Notification.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + lease)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another process has it
            row = session.get(Notification, notification_id)
            assert row is not None
            kind, payload, attempts = row.kind, row.payload.encode("utf-8"), row.attempts + 1
        error: str | None = None
        try:
            notifier.send(notification_id, kind, payload)
        except DeliveryError as exc:
            error = str(exc)[:MAX_ERROR_CHARS]
        except Exception as exc:  # a broken notifier must not stop the loop
            log.exception("notifier failed on %s", notification_id)
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if error is None:
            values.update(status=STATUS_DELIVERED, delivered_at=datetime.now(UTC))
            delivered += 1
        elif attempts >= settings.max_attempts:
            values.update(status=STATUS_FAILED)
            log.warning("notification %s failed for good: %s", notification_id, error)
        else:
            values.update(next_attempt_at=clock.time() + backoff_s(attempts, settings))
        with sessions() as session:
            session.execute(
                update(Notification)
                .where(Notification.id == notification_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            session.commit()
    return delivered


class DeliveryLoop:
    """Runs `deliver_due` in a daemon thread until stopped."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        notifier: Notifier,
        settings: NotifySettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._notifier = notifier
        self._periodic = Periodic(
            "jz-notify",
            lambda: deliver_due(sessions, notifier, settings, clock=clock),
            settings.poll_interval_s,
        )

    def start(self) -> DeliveryLoop:
        self._periodic.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._periodic.stop(timeout)
        close = getattr(self._notifier, "close", None)
        if callable(close):
            close()
