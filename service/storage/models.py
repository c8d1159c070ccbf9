"""SQLAlchemy 2 models. Schema changes go through Alembic (service/storage/migrations)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Integer primary keys: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Institution(Base):
    """A lab (检测机构), identified by its unified social credit code."""

    __tablename__ = "institutions"

    uscc: Mapped[str] = mapped_column(String(18), primary_key=True)
    region: Mapped[str] = mapped_column(String(6))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Auditor(Base):
    __tablename__ = "auditors"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """An API key; the secret is stored only encrypted with the master key."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # "lab" | "auditor"
    institution: Mapped[str | None] = mapped_column(
        ForeignKey("institutions.uscc"), nullable=True, index=True
    )
    auditor_id: Mapped[str | None] = mapped_column(ForeignKey("auditors.id"), nullable=True)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Nonce(Base):
    """Nonces seen within the replay window, per key (shared by every API process)."""

    __tablename__ = "auth_nonces"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[int] = mapped_column(BigInteger, index=True)  # unix seconds


class Record(Base):
    """An evidence record: its exact canonical JSON bytes and their leaf hash.

    `canonical` is the source of truth for what was recorded; every other column
    is an index derived from it at write time.
    """

    __tablename__ = "records"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    type: Mapped[str] = mapped_column(String(24), index=True)
    institution: Mapped[str] = mapped_column(String(18), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: Report code this record belongs to (report, revocation records), canonical form.
    code: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)


class RecordParent(Base):
    __tablename__ = "record_parents"

    child_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True)
    parent_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)


class RecordFile(Base):
    """A file a record names by SHA-256; its bytes live in the blob store."""

    __tablename__ = "record_files"

    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))


class Outbox(Base):
    """Leaves accepted but not yet in a batch, in arrival order.

    A row is written in the same transaction as its record, so a 2xx reply
    means the leaf will be anchored; the worker moves rows into `batch_leaves`
    in the same transaction that creates their batch.
    """

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), unique=True)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    enqueued_at: Mapped[float] = mapped_column()  # unix time, sub-second


class Batch(Base):
    """One Merkle tree, anchored on chain as `anchor(seq, root, size)`.

    status: `prepared` (tree built, nothing sent) -> `sent` (raw tx stored and
    broadcast) -> `anchored` (receipt with the Anchored event, confirmations met).
    """

    __tablename__ = "batches"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column()
    oldest_enqueued_at: Mapped[float] = mapped_column()
    chain_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    registry_address: Mapped[str | None] = mapped_column(String(42), nullable=True)
    raw_tx: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    tx_nonce: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    anchored_at: Mapped[float | None] = mapped_column(nullable=True)


class BatchLeaf(Base):
    __tablename__ = "batch_leaves"
    __table_args__ = (UniqueConstraint("record_id", name="uq_batch_leaves_record"),)

    batch_seq: Mapped[int] = mapped_column(ForeignKey("batches.seq"), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(String(26))
    leaf_hash: Mapped[str] = mapped_column(String(64))


class KeyValue(Base):
    """Small service state (e.g. the dev chain deployment the database belongs to)."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
