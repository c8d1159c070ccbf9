"""Corrections of test data (R10): data changes only through a recorded, reviewable
correction, a new `test_record` that names the one it corrects (`corrects`). One
correction per test record is a primary-key fact (`test_corrections`), so the history of
a test stays one line even when two corrections race."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import Conflict, Invalid, JianzhengError
from service.storage.models import Record, RecordParent, TestCorrection


def correction_of(session: Session, test_record_id: str) -> str | None:
    """The id of the test record that corrects `test_record_id` (R10), or None."""
    return session.scalar(
        select(TestCorrection.correction_id).where(TestCorrection.corrected_id == test_record_id)
    )


def already_corrected(corrected_id: str, by: str | None) -> JianzhengError:
    return Conflict(
        "already_corrected",
        f"test record {corrected_id} was already corrected by {by}; correct that one",
        corrected_by=by,
    )


def _sample_parents(session: Session, record_id: str) -> set[str]:
    return set(
        session.scalars(
            select(RecordParent.parent_id)
            .join(Record, Record.id == RecordParent.parent_id)
            .where(RecordParent.child_id == record_id, Record.type == "sample")
        )
    )


def check_correction(session: Session, corrected: Record, parents: Sequence[Record]) -> None:
    """A correction tests the same sample as the record it corrects, and corrects the
    latest version: a record corrected once is superseded, so the history stays one line
    (a race between two corrections is settled by `record_correction`)."""
    already = correction_of(session, corrected.id)
    if already is not None:
        raise already_corrected(corrected.id, already)
    samples = {p.id for p in parents if p.type == "sample"}
    if not samples & _sample_parents(session, corrected.id):
        raise Invalid(
            "correction_sample_mismatch",
            "a correction must name a sample of the test record it corrects",
        )


def record_correction(session: Session, corrected_id: str, correction_id: str) -> None:
    """Register `correction_id` as the one correction of `corrected_id`; 409
    `already_corrected` (naming the winner) when another correction got there first."""
    session.add(TestCorrection(corrected_id=corrected_id, correction_id=correction_id))
    try:
        session.flush()
    except IntegrityError as exc:  # another correction of the same record won the race
        session.rollback()
        raise already_corrected(corrected_id, correction_of(session, corrected_id)) from exc
