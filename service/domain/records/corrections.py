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
from service.storage.models import Record, RecordParent, SampleTestItem, TestCorrection


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


#: What a test record tests: its samples, or (on-site) its plan or project.
SUBJECT_TYPES = ("sample", "test_plan", "project")


def _subject_parents(session: Session, record_id: str) -> set[str]:
    return set(
        session.scalars(
            select(RecordParent.parent_id)
            .join(Record, Record.id == RecordParent.parent_id)
            .where(RecordParent.child_id == record_id, Record.type.in_(SUBJECT_TYPES))
        )
    )


def check_correction(session: Session, corrected: Record, parents: Sequence[Record]) -> None:
    """A correction tests the same sample as the record it corrects, and corrects the
    latest version: a record corrected once is superseded, so the history stays one line
    (a race between two corrections is settled by `record_correction`)."""
    already = correction_of(session, corrected.id)
    if already is not None:
        raise already_corrected(corrected.id, already)
    subjects = {p.id for p in parents if p.type in SUBJECT_TYPES}
    if not subjects & _subject_parents(session, corrected.id):
        raise Invalid(
            "correction_sample_mismatch",
            "a correction must name a sample (on site: the plan or project) of the test "
            "record it corrects",
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


def latest_version(session: Session, test_record_id: str) -> str:
    """The newest correction of a test record (itself if never corrected)."""
    current, seen = test_record_id, {test_record_id}
    while (nxt := correction_of(session, current)) is not None and nxt not in seen:
        seen.add(nxt)
        current = nxt
    return current


def _existing(session: Session, samples: Sequence[Record], test_item: str) -> str | None:
    for sample in samples:
        row = session.get(SampleTestItem, (sample.id, test_item[:200]))
        if row is not None:
            return latest_version(session, row.record_id)
    return None


def test_record_exists(existing: str, test_item: str) -> JianzhengError:
    return Conflict(
        "test_record_exists",
        f"a test record of this sample for {test_item!r} exists ({existing}): correct it "
        "(corrects + correction_reason) or say why this is a separate test (retest_reason)",
        existing=existing,
    )


def check_not_replacing(session: Session, samples: Sequence[Record], test_item: str) -> None:
    """R23: a new test record (neither a correction nor a retest) of a sample for a test
    item already tested would silently replace data: 409 `test_record_exists`."""
    existing = _existing(session, samples, test_item)
    if existing is not None:
        raise test_record_exists(existing, test_item)


def record_first_test(
    session: Session, samples: Sequence[Record], test_item: str, record_id: str
) -> None:
    """Register the first test record of each sample for the item; a first record that
    raced another for the same sample and item gets 409 naming the winner."""
    session.add_all(
        SampleTestItem(sample_id=s.id, test_item=test_item[:200], record_id=record_id)
        for s in samples
    )
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        existing = _existing(session, samples, test_item) or "?"
        raise test_record_exists(existing, test_item) from exc
