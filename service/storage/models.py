"""SQLAlchemy 2 models. Schema changes go through Alembic (service/storage/migrations)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
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
    __table_args__ = (UniqueConstraint("login", name="uq_auditors_login"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: 6-digit region code the auditor is limited to (its province, city or county);
    #: None: every institution.
    region_scope: Mapped[str | None] = mapped_column(String(6), nullable=True)
    #: "auditor" (reads) or "agency" (a supervision agency: reads its region, writes its
    #: registry; always limited to a region).
    kind: Mapped[str] = mapped_column(String(16), server_default="auditor")
    #: Console sign-in (migration 0012): a unique login name, an argon2id password hash
    #: and the TOTP secret sealed with the master key (service.domain.console.auth).
    login: Mapped[str | None] = mapped_column(String(64), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    totp_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: The last TOTP time step accepted (a code is good once).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


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
    #: "hmac-sha256" (INTERFACE §5.1) or "hmac-sm3" (§7.7).
    algorithm: Mapped[str] = mapped_column(String(16), server_default="hmac-sha256")
    #: After this the key signs nothing (401 auth_unknown_key); None: no expiry.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Nonce(Base):
    """Nonces seen within the replay window, per key (shared by every API process)."""

    __tablename__ = "auth_nonces"
    #: Only the purge reads seen_at, and nonces arrive in time order: BRIN on PostgreSQL.
    __table_args__ = (Index("ix_auth_nonces_seen_at", "seen_at", postgresql_using="brin"),)

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[int] = mapped_column(BigInteger)  # unix seconds


class Record(Base):
    """An evidence record: its exact canonical JSON bytes and their leaf hash.

    `canonical` is the source of truth for what was recorded; every other column
    is an index derived from it at write time.
    """

    __tablename__ = "records"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    type: Mapped[str] = mapped_column(String(24))
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
    """Every accepted leaf, in arrival order: the log the batches are ranges of.

    A row is written in the same transaction as its record, so a 2xx reply means the
    leaf will be anchored. A batch covers the rows with `first_seq <= seq <= last_seq`
    (migration 0020); the rows above the highest batch's `last_seq` (the watermark) are
    the ones still waiting. Rows are never moved or deleted by the worker (an UPDATE or
    DELETE moves the evidence change stamp, as for records).
    """

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), unique=True)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    enqueued_at: Mapped[float] = mapped_column()  # unix time, sub-second


class Batch(Base):
    """One Merkle tree, anchored on chain as `anchor(seq, root, size)`.

    Its leaves are the outbox rows from `first_seq` to `last_seq`, in seq order (`size`
    of them; seqs may have gaps, a rolled-back insert's).

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
    #: The outbox range of its leaves (migration 0020; nullable only for ALTER TABLE).
    first_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True, index=True)


class KeyValue(Base):
    """Small service state (e.g. the dev chain deployment the database belongs to)."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --- Records of the traceable chain (migration 0003) ------------------------------------


class WitnessKey(Base):
    """A witness's (见证人员) public key, registered by a lab before it signs seals.

    The key signs electronic seals (电子封志) and witness records; the server keeps the
    SubjectPublicKeyInfo (DER) and copies it into every record the key signed, so the
    record can be re-verified without this table.
    """

    __tablename__ = "witness_keys"
    __table_args__ = (UniqueConstraint("institution", "fingerprint", name="uq_witness_key_fp"),)

    key_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    institution: Mapped[str] = mapped_column(String(18), index=True)
    algorithm: Mapped[str] = mapped_column(String(16))  # "ed25519" | "ecdsa-p256" | "sm2"
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # SubjectPublicKeyInfo DER
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the DER
    #: An SM2 key's distinguishing ID (migration 0013); None: `1234567812345678` (§7.7).
    distinguishing_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    witness_name: Mapped[str] = mapped_column(String(100))
    witness_id_number: Mapped[str] = mapped_column(String(18))
    witness_unit: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # --- what a supervision agency vouched for (migration 0011) ---
    #: "witness" (见证人员) or "sampler" (取样人员).
    role: Mapped[str] = mapped_column(String(16), server_default="witness")
    #: The agency account that verified the key; None: only the lab registered it.
    verified_by: Mapped[str | None] = mapped_column(String(26), nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The `registry` record of the verification; seals and witness records name it.
    registry_record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    #: The platform CA's X.509 certificate for the key (DER).
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class RegistryDevice(Base):
    """A device (检测设备) the supervision agency registered for a lab, as its latest
    `registry` record of kind `device` states it (migration 0011)."""

    __tablename__ = "registry_devices"

    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    #: The last day the calibration/verification (检定/校准) is valid.
    valid_until: Mapped[date] = mapped_column(Date)


class RegistryStaff(Base):
    """A lab's tester or report approver as the supervision agency registered them
    (migration 0011); matched by name, as test records and reports name people."""

    __tablename__ = "registry_staff"

    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    #: Comma-separated: "tester", "approver".
    roles: Mapped[str] = mapped_column(String(64))
    #: JSON list of the test items (检测项目/参数) an approver may sign for (签字范围).
    signing_scope: Mapped[str] = mapped_column(Text)


class RegistryQualification(Base):
    """A lab's qualification certificate (资质证书) and its scope (能力附表) as the
    supervision agency registered it (migration 0017)."""

    __tablename__ = "registry_qualifications"

    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    certificate_no: Mapped[str] = mapped_column(String(100), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    valid_from: Mapped[date | None] = mapped_column(Date, nullable=True)
    #: The last day the certificate is valid.
    valid_until: Mapped[date] = mapped_column(Date)
    #: JSON list of {"specialty": 检测专项, "items": [检测项目/参数, ...]}.
    scope: Mapped[str] = mapped_column(Text)


class RegistryProposal(Base):
    """A registry entry (staff, device, qualification) a lab proposed for the supervision
    agency of its region to approve or reject (migration 0019). The approval is the
    agency's `registry` record (`record_id`); the proposal itself is no evidence."""

    __tablename__ = "registry_proposals"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    institution: Mapped[str] = mapped_column(String(18), index=True)
    #: "staff" | "device" | "qualification"
    kind: Mapped[str] = mapped_column(String(16))
    #: JSON: the entry as the agency would send it, without `institution`.
    entry: Mapped[str] = mapped_column(Text)
    proposed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: "pending" -> "approved" | "rejected"
    status: Mapped[str] = mapped_column(String(16), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(26), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    record_id: Mapped[str | None] = mapped_column(ForeignKey("records.id"), nullable=True)


class SampleCode(Base):
    """Sample unique codes (唯一性编码): one sample record per code and institution."""

    __tablename__ = "sample_codes"

    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    sample_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), unique=True)


class TestCorrection(Base):
    """Which test record corrects which (R10); one correction per corrected record."""

    __tablename__ = "test_corrections"

    corrected_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True)
    correction_id: Mapped[str] = mapped_column(ForeignKey("records.id"), unique=True)


class Upload(Base):
    """A resumable upload (INTERFACE §5.2).

    status: `open` (accepting chunks) -> `complete` (SHA-256 checked, blob stored) ->
    `used` (named by a record). The partial bytes live in `{data_dir}/uploads/<id>.part`;
    only the first `offset` bytes of that file count.
    """

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    institution: Mapped[str] = mapped_column(String(18), index=True)
    length: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    offset: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SampleTestItem(Base):
    """The first test record of a sample for a test item (R23: later ones correct or retest)."""

    __tablename__ = "sample_test_items"

    sample_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True)
    test_item: Mapped[str] = mapped_column(String(200), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))


class ReportWarning(Base):
    """A warning of a report (§7.2) as computed when its latest record was written."""

    __tablename__ = "report_warnings"
    __table_args__ = (Index("ix_report_warnings_region_created", "region", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    report_code: Mapped[str] = mapped_column(String(32), index=True)
    institution: Mapped[str] = mapped_column(String(18), index=True)
    region: Mapped[str] = mapped_column(String(6))
    code: Mapped[str] = mapped_column(String(40), index=True)
    record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    report_record_id: Mapped[str] = mapped_column(String(26))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecordFlag(Base):
    """A rule a record broke when it arrived (late contract, late test data, ...).

    The same flags are inside the record's body (so they are anchored); this table
    lets auditors query them.
    """

    __tablename__ = "record_flags"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    institution: Mapped[str] = mapped_column(String(18), index=True)
    record_type: Mapped[str] = mapped_column(String(24))
    rule: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NonconformingEntry(Base):
    """The nonconforming-results ledger (检测结果不合格项目台账), one entry per report code."""

    __tablename__ = "nonconforming_ledger"
    __table_args__ = (UniqueConstraint("institution", "code", name="uq_nonconforming_code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    institution: Mapped[str] = mapped_column(String(18), index=True)
    code: Mapped[str] = mapped_column(String(32))
    report_record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    details: Mapped[str] = mapped_column(Text)  # JSON
    notification_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notification(Base):
    """A durable outgoing notification; the delivery loop retries it with backoff.

    status: `pending` -> `delivered`, or `failed` after the last attempt.
    """

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    institution: Mapped[str] = mapped_column(String(18), index=True)
    #: The region whose supervision agency it is for (the project's, else the lab's;
    #: migration 0019): agencies list theirs (`GET /api/v1/audit/notifications`).
    agency_region: Mapped[str | None] = mapped_column(String(6), nullable=True, index=True)
    payload: Mapped[str] = mapped_column(Text)  # JSON, sent as is
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[float] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# --------------------------------------------------------------------------- lab API (0002)


class ReportCode(Base):
    """A report code (检测报告标识码) bound at issuance to institution, year and report number.

    status: `issued` -> `reported` (metadata recorded) -> `revoked`; or `voided` (the
    number was voided before a signed PDF existed). A report counts as *finished* once
    `sealed_at` is set (the signed-PDF step sets it with `pdf_record_id`).
    """

    __tablename__ = "report_codes"
    __table_args__ = (
        UniqueConstraint(
            "institution", "year", "report_no", name="uq_report_codes_institution_year_no"
        ),
        #: The numbering panel's unfinished codes (no signed PDF yet) without a scan.
        Index("ix_report_codes_unsealed", "year", "institution", "issued_at",
              postgresql_where=text("sealed_at IS NULL"), sqlite_where=text("sealed_at IS NULL")),
    )

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    institution: Mapped[str] = mapped_column(ForeignKey("institutions.uscc"))
    year: Mapped[int] = mapped_column(Integer)
    report_no: Mapped[str] = mapped_column(String(64))
    project_record_id: Mapped[str] = mapped_column(String(26))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The `report` evidence record of the issuance.
    issue_record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    #: Latest `report` record holding the metadata (PUT /api/v1/reports/{code}).
    report_record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    #: Record of the signed PDF; set together with `sealed_at` by the PDF step.
    pdf_record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    sealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revocation_record_id: Mapped[str | None] = mapped_column(String(26), nullable=True)
    superseded_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16))


class ReportFactRow(Base):
    """One row per report code: what the console counts and searches (issue 14), written in
    the same transaction as the report's issuance, metadata, seal, revocation or void
    (service.domain.reports.facts.refresh_facts) and back-filled by migration 0018."""

    __tablename__ = "report_facts"
    __table_args__ = (
        Index("ix_report_facts_region_issued_on", "region", "issued_on"),
        Index("ix_report_facts_issued_on_code", "issued_on", "code"),
        Index("ix_report_facts_institution_year", "institution", "year", "report_no"),
    )

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    institution: Mapped[str] = mapped_column(String(18))
    region: Mapped[str] = mapped_column(String(6))
    report_no: Mapped[str] = mapped_column(String(64))
    year: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The report's own issue date (metadata `issued_on`), else the Beijing date of issuance.
    issued_on: Mapped[date] = mapped_column(Date)
    sealed: Mapped[bool] = mapped_column(Boolean)
    revoked: Mapped[bool] = mapped_column(Boolean)
    conclusion: Mapped[str | None] = mapped_column(String(8), nullable=True)
    project_record_id: Mapped[str] = mapped_column(String(26))
    project_name: Mapped[str] = mapped_column(Text)
    #: The test items, sorted, joined by a newline (report_fact_items holds one row each).
    test_items: Mapped[str] = mapped_column(Text)
    warning_count: Mapped[int] = mapped_column(Integer)


class ReportFactItem(Base):
    """A test item of a report fact, with the columns its counts group and filter by."""

    __tablename__ = "report_fact_items"
    __table_args__ = (
        Index("ix_report_fact_items_item_region", "test_item", "region", "issued_on"),
        Index("ix_report_fact_items_region_issued_on", "region", "issued_on"),
    )

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    test_item: Mapped[str] = mapped_column(String(200), primary_key=True)
    institution: Mapped[str] = mapped_column(String(18))
    region: Mapped[str] = mapped_column(String(6))
    issued_on: Mapped[date] = mapped_column(Date)
    conclusion: Mapped[str | None] = mapped_column(String(8), nullable=True)


class _FactCounts:
    """Report facts counted by region, lab, date, status, conclusion and test-item set
    (issue 14): kept exact by database triggers on `report_facts` (migration 0021), so the
    console's counts add these rows up instead of the facts. The primary key leads with the
    day (migration 0022): the charts read a range of days (30 days, 12 weeks, 12 months)
    of a region that is itself a prefix range, and with the day first that is one stretch
    of the key whatever the region."""

    #: The day (report_fact_days) or the first day of the month (report_fact_months).
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region: Mapped[str] = mapped_column(String(6), primary_key=True)
    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: "pass", "fail" or "" (none recorded).
    conclusion: Mapped[str] = mapped_column(String(8), primary_key=True)
    #: The facts' `test_items` (sorted, newline-joined; "" for none).
    test_items: Mapped[str] = mapped_column(Text, primary_key=True)
    #: How many facts have these values (rows at 0 may remain; readers skip them).
    n: Mapped[int] = mapped_column(BigInteger)


class ReportFactDay(_FactCounts, Base):
    __tablename__ = "report_fact_days"


class ReportFactMonth(_FactCounts, Base):
    __tablename__ = "report_fact_months"


class NumberingYear(Base):
    """How many report codes a lab has in a numbering year (kept with `report_codes`)."""

    __tablename__ = "numbering_years"

    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    issued: Mapped[int] = mapped_column(BigInteger)


class NumberingSeries(Base):
    """A numbering series of a lab and year (report numbers split as
    service.domain.reports.numbering.sequence_of does): its highest number and narrowest
    digit width, kept with every number taken (issued or voided)."""

    __tablename__ = "numbering_series"

    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(64), primary_key=True)
    suffix: Mapped[str] = mapped_column(String(64), primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)


class NumberingGap(Base):
    """A run lo..hi of numbers from 1 to the series' highest that no code or void took."""

    __tablename__ = "numbering_gaps"

    institution: Mapped[str] = mapped_column(String(18), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(64), primary_key=True)
    suffix: Mapped[str] = mapped_column(String(64), primary_key=True)
    lo: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hi: Mapped[int] = mapped_column(BigInteger)


class NumberingVoid(Base):
    """A report number voided with a reason (a `numbering_void` evidence record)."""

    __tablename__ = "numbering_voids"
    __table_args__ = (
        UniqueConstraint(
            "institution", "year", "report_no", name="uq_numbering_voids_institution_year_no"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    institution: Mapped[str] = mapped_column(ForeignKey("institutions.uscc"))
    year: Mapped[int] = mapped_column(Integer)
    report_no: Mapped[str] = mapped_column(String(64))
    code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    voided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """The first successful answer to a POST/PUT carrying `Idempotency-Key`, per caller."""

    __tablename__ = "idempotency_keys"

    #: Caller scope: the institution's USCC for lab keys, the auditor id for auditors.
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: SHA-256 over method, path, canonical query and body bytes.
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(100))
    response_body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)  # unix seconds


class ChainRevocation(Base):
    """A report revocation to write with the registry's `revoke(subject, reason)`.

    status: `pending` -> `sent` (tx broadcast, hash stored) -> `done`.
    """

    __tablename__ = "chain_revocations"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EvidenceStamp(Base):
    """One row whose counter database triggers bump on any UPDATE/DELETE of evidence
    (migration 0004); the public view's cache is valid while it stands still."""

    __tablename__ = "evidence_stamp"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    counter: Mapped[int] = mapped_column(BigInteger)


class SignatureCheck(Base):
    """A sealed PDF's validation verdict, bound to its SHA-256 and MAC'd with the master key
    (used by the public view only under the rule in `service.domain.public.verdicts`)."""

    __tablename__ = "signature_checks"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    context: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(Text)
    checked_at: Mapped[float] = mapped_column()
    mac: Mapped[str] = mapped_column(String(64))


# --------------------------------------------------------------------------- console (0012)


class ConsoleSession(Base):
    """A signed-in console session; the cookie holds the token, the row its SHA-256."""

    __tablename__ = "console_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("auditors.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column()
    last_seen_at: Mapped[float] = mapped_column()
    ended_at: Mapped[float | None] = mapped_column(nullable=True)


class ConsoleSignin(Base):
    """One console sign-in attempt (for throttling and the account's own record)."""

    __tablename__ = "console_signins"
    __table_args__ = (Index("ix_console_signins_login_at", "login", "at"),
                      Index("ix_console_signins_ip_at", "ip", "at"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column()
    ok: Mapped[bool] = mapped_column(Boolean)


class ConsoleAccess(Base):
    """Access log: an unmasked view of personal data or a download, by a console account."""

    __tablename__ = "console_access_log"
    __table_args__ = (Index("ix_console_access_region_at", "region", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(26), index=True)
    account_name: Mapped[str] = mapped_column(String(200))
    #: The account's region scope ('' for a national account).
    region: Mapped[str] = mapped_column(String(6))
    action: Mapped[str] = mapped_column(String(32))
    report_code: Mapped[str] = mapped_column(String(32))
    institution: Mapped[str] = mapped_column(String(18))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NonconformingAction(Base):
    """A supervision agency's handling step (处置) on a nonconforming-ledger entry; the step
    itself is a `ledger_action` evidence record (INTERFACE §7.4), child of the report record."""

    __tablename__ = "nonconforming_actions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("nonconforming_ledger.id"), index=True)
    action: Mapped[str] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    account_id: Mapped[str] = mapped_column(String(26))
    account_name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RateBucket(Base):
    """The public rate limit's token bucket of one client (an IPv4 address or an IPv6
    /64), shared by every API process (service.storage.ratelimit.SharedRateLimiter).
    Unlogged on PostgreSQL (migration 0014): losing it in a crash only refills buckets."""

    __tablename__ = "rate_buckets"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column()
    #: Unix seconds of the last take; buckets idle long enough to be full are deleted.
    updated: Mapped[float] = mapped_column(index=True)
    #: Whether the last take was granted (the UPSERT returns it).
    granted: Mapped[bool] = mapped_column()
