"""Schema and evidence-log basics on both databases."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from service.domain.evidence import append_record, new_record_id
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Outbox, Record, RecordParent
from verifier.canonical import canonicalize
from verifier.merkle import leaf_hash


def test_record_and_outbox_written_together(app_state: ServiceState) -> None:
    with session_scope(app_state.sessions) as s:
        project = append_record(
            s, type="project", institution="91440300MA5EXXXXX1", body={"name": "深圳湾大桥"}
        )
        child = append_record(
            s, type="contract", institution="91440300MA5EXXXXX1", body={}, parents=[project]
        )
    with session_scope(app_state.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Outbox)) == 2
        stored = s.get(Record, child.id)
        assert stored is not None
        obj = json.loads(stored.canonical)
        assert obj["parents"] == [project.leaf_hash]
        assert canonicalize(obj) == stored.canonical
        assert leaf_hash(stored.canonical).hex() == stored.leaf_hash
        parent_ids = s.scalars(
            select(RecordParent.parent_id).where(RecordParent.child_id == child.id)
        ).all()
        assert parent_ids == [project.id]


def test_failed_transaction_leaves_no_outbox_row(app_state: ServiceState) -> None:
    try:
        with session_scope(app_state.sessions) as s:
            append_record(s, type="project", institution="X", body={"n": 1})
            raise RuntimeError("client gone")
    except RuntimeError:
        pass
    with session_scope(app_state.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Outbox)) == 0
        assert s.scalar(select(func.count()).select_from(Record)) == 0


def test_record_ids_are_ulids_in_time_order() -> None:
    a, b = new_record_id(), new_record_id()
    assert len(a) == 26 and a[:8] <= b[:8]
