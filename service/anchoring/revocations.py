"""Send queued report revocations to the registry's `revoke(subject, reason)` (INTERFACE §2).

`POST /api/v1/reports/{code}/revocation` queues a `chain_revocations` row (status
`pending`) in the same transaction as the `revocation` record. The anchoring worker
calls `process_pending_revocations` from its loop (one sender account, so nonces stay
in order). Each row goes `pending` -> `sent` (transaction hash stored before the
broadcast) -> `done`. The step is idempotent: before sending, the registry is asked
whether the subject is already revoked (a crash after the broadcast), and an
`EvidenceRegistryAlreadyRevoked` revert also counts as done.

"On chain" means what it means for an anchor: mined, and `chain.confirmations` blocks
on top of the revocation's block (RegistryClient.wait_mined, with `chain.receipt_timeout_s`).
A revocation mined but not yet deep enough stays `sent` (or `pending` when it was found on
chain rather than sent by us) and is looked at again on the worker's next tick.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.anchoring.contract import (
    DEFAULT_RECEIPT_TIMEOUT,
    ChainError,
    ChainReverted,
    RegistryClient,
)
from service.storage.models import ChainRevocation

log = logging.getLogger(__name__)

#: Rows handled per call (the worker calls again on its next tick).
MAX_PER_CALL = 50
ALREADY_REVOKED = "EvidenceRegistryAlreadyRevoked"
STATUS_PENDING = "pending"
STATUS_SENT = "sent"
STATUS_DONE = "done"


def process_pending_revocations(
    session_factory: sessionmaker[Session],
    client: RegistryClient | Any,
    *,
    confirmations: int = 0,
    receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT,
) -> int:
    """Send pending revocations; returns how many became `done` in this call.

    A revocation is done once its transaction is mined and `confirmations` blocks deep
    (the worker passes `chain.confirmations` and `chain.receipt_timeout_s`). Stops at the
    first chain failure other than a revert (node unreachable, timeout): the row keeps its
    state, its `attempts` and `last_error` are updated, and the next call retries it.
    """
    with session_factory() as session:
        subjects = session.scalars(
            select(ChainRevocation.subject)
            .where(ChainRevocation.status.in_((STATUS_PENDING, STATUS_SENT)))
            .order_by(ChainRevocation.created_at, ChainRevocation.subject)
            .limit(MAX_PER_CALL)
        ).all()
    done = 0
    for subject in subjects:
        try:
            if _process_one(session_factory, client, subject, confirmations, receipt_timeout_s):
                done += 1
        except ChainError as exc:
            _record_failure(session_factory, subject, exc)
            if not isinstance(exc, ChainReverted):
                break
    return done


def _process_one(
    session_factory: sessionmaker[Session],
    client: RegistryClient | Any,
    subject: str,
    confirmations: int,
    receipt_timeout_s: float,
) -> bool:
    with session_factory() as session:
        row = session.get(ChainRevocation, subject)
        if row is None or row.status == STATUS_DONE:
            return False
        reason, tx_hash, status = row.reason, row.tx_hash, row.status

    if status == STATUS_SENT and tx_hash:
        receipt = client.get_receipt(tx_hash)
        if receipt is not None and receipt.status == 1:
            if not client.confirmed(receipt.block_number, confirmations):
                return False  # mined, not yet deep enough: look again next time
            return _mark_done(session_factory, subject, tx_hash)
    # 1. Already on chain (a crash after the broadcast, or another sender)? Then done.
    if client.revocation_of(subject) is not None:
        return _done_if_deep(session_factory, client, subject, tx_hash, confirmations)
    # 2. Sign, store the hash, broadcast, wait for the receipt and its confirmations.
    signed = client.build_revoke_tx(subject, reason, client.pending_nonce())
    with session_factory() as session:
        row = session.get(ChainRevocation, subject)
        assert row is not None
        row.status = STATUS_SENT
        row.tx_hash = signed.hash
        row.attempts = (row.attempts or 0) + 1
        session.commit()
    try:
        client.send_raw(signed.raw)
        client.wait_receipt(signed.hash, receipt_timeout_s, confirmations)
    except ChainReverted as exc:
        if exc.revert is not None and exc.revert.name == ALREADY_REVOKED:
            return _done_if_deep(session_factory, client, subject, None, confirmations)
        raise
    return _mark_done(session_factory, subject, signed.hash)


def _done_if_deep(
    session_factory: sessionmaker[Session],
    client: RegistryClient | Any,
    subject: str,
    tx_hash: str | None,
    confirmations: int,
) -> bool:
    """The subject is revoked on chain already: done once that revocation (its `Revoked`
    log) is `confirmations` blocks deep; False (look again next time) until then."""
    if confirmations:
        # The stored transaction's receipt first; the log search (newest first, in bounded
        # windows) only when another transaction revoked it.
        receipt = client.get_receipt(tx_hash) if tx_hash else None
        if receipt is not None and receipt.status == 1:
            block = receipt.block_number
        else:
            found = client.find_revoke_tx(subject)
            if found is None:
                raise ChainError(f"subject {subject} is revoked but its Revoked log is missing")
            block = found.block_number
        if not client.confirmed(block, confirmations):
            return False
    return _mark_done(session_factory, subject, tx_hash)


def _mark_done(session_factory: sessionmaker[Session], subject: str, tx_hash: str | None) -> bool:
    with session_factory() as session:
        row = session.get(ChainRevocation, subject)
        if row is None:
            return False
        row.status = STATUS_DONE
        if tx_hash:
            row.tx_hash = tx_hash
        row.last_error = None
        session.commit()
    log.info("revocation of subject %s is on chain", subject)
    return True


def _record_failure(session_factory: sessionmaker[Session], subject: str, exc: Exception) -> None:
    log.warning("revocation of subject %s failed: %s", subject, exc)
    with session_factory() as session:
        row = session.get(ChainRevocation, subject)
        if row is None:
            return
        if row.status == STATUS_SENT and isinstance(exc, ChainReverted):
            row.status = STATUS_PENDING  # the transaction failed: send a new one next time
        row.attempts = (row.attempts or 0) + 1
        row.last_error = f"{getattr(exc, 'code', 'error')}: {exc}"[:1000]
        session.commit()
