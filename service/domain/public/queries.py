"""What one public view reads from the database: the report code row (its *head*, with the
evidence change stamp) and the report's evidence, each record with its batch facts.

The evidence is the one ancestry walk (`service.domain.ancestry.walk`, attachments
included); the SQL of the head and of the batch facts is `service.storage.public_sql`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from service.domain.ancestry import walk
from service.storage.public_sql import HEAD_ROW, read_batch_facts, read_head

#: Most records one report's ancestry may hold before the view refuses to walk further.
MAX_ANCESTRY = 2_000


@dataclass(frozen=True)
class CodeRow:
    code: str
    institution: str
    institution_name: str | None
    report_no: str
    project_record_id: str | None
    issued_at: Any
    issue_record_id: str
    report_record_id: str | None
    pdf_record_id: str | None
    sealed_at: Any
    revocation_record_id: str | None
    superseded_by: str | None
    status: str

    @classmethod
    def of_head(cls, head: Sequence[Any]) -> CodeRow:
        return cls(*head[:HEAD_ROW])


@dataclass(frozen=True)
class RecordRow:
    id: str
    type: str
    institution: str
    canonical: bytes
    leaf_hash: str
    created_at: Any
    batch_seq: int | None
    leaf_index: int | None
    batch_leaf_hash: str | None
    batch_status: str | None
    batch_root: str | None
    batch_size: int | None
    batch_chain_id: int | None
    batch_registry: str | None
    batch_tx_hash: str | None
    batch_block_number: int | None
    batch_block_timestamp: int | None
    #: The record's leaf waits in the outbox for its batch (read in the same statement as
    #: its batch leaf, so the worker moving it is never seen half done).
    queued: bool = False

    @property
    def batch_key(self) -> tuple[Any, ...]:
        return (
            self.queued,
            self.batch_seq,
            self.leaf_index,
            self.batch_leaf_hash,
            self.batch_status,
            self.batch_root,
            self.batch_size,
            self.batch_chain_id,
            self.batch_registry,
            self.batch_tx_hash,
            self.batch_block_number,
            self.batch_block_timestamp,
        )


_NO_BATCH: tuple[Any, ...] = (None,) * 11 + (0,)


def load_code(session: Session, code: str) -> CodeRow | None:
    head = read_head(session.connection(), code)
    return CodeRow.of_head(head) if head is not None else None


def load_ancestry(
    session: Session, roots: Sequence[str]
) -> tuple[dict[str, RecordRow], dict[str, list[str]]]:
    """Every record of a report's view (its evidence: `ancestry.walk` with attachments,
    at most MAX_ANCESTRY + 1 records) with its batch facts, and the parent links of each
    (`record_parents`, ordered by position)."""
    found = walk(session, roots, attachments=True, limit=MAX_ANCESTRY + 1)
    facts = read_batch_facts(session.connection(), list(found.records))
    records: dict[str, RecordRow] = {}
    for rid, node in found.records.items():
        (seq, index, batch_leaf, status, root, size, chain_id, registry, tx_hash, block,
         block_time, queued) = facts.get(rid, _NO_BATCH)
        records[rid] = RecordRow(
            node.id, node.type, node.institution, node.canonical, node.leaf_hash,
            node.created_at, seq, index, batch_leaf, status, root, size, chain_id, registry,
            tx_hash, block, block_time, queued=bool(queued),
        )
    return records, found.links
