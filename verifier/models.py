"""Typed values of the verifier: parsed proofs, chain data, and check results.

Every dataclass here is frozen. A verification is a value with one field per check and a
``bottom_line``; findings name the record (id and type) a failed or doubtful check is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from verifier.custody import EvidenceWarning
from verifier.merkle import HashAlg

Severity = Literal["error", "warning"]
ReportStatus = Literal["genuine", "revoked", "superseded"]


@dataclass(frozen=True)
class Check:
    """The outcome of one named check.

    ``ok`` is False when the check failed (or could not be run). ``warning`` marks a passed
    check whose result rests on something not verified (e.g. an unpinned registry) or that
    reports a notable state (a revoked report); it never turns a failure into a pass.
    """

    name: str
    ok: bool
    detail: str
    record_id: str | None = None
    record_type: str | None = None
    warning: bool = False

    @property
    def status(self) -> Literal["PASS", "FAIL", "WARN"]:
        if not self.ok:
            return "FAIL"
        return "WARN" if self.warning else "PASS"


@dataclass(frozen=True)
class Finding:
    """Why a check failed or warned, and which record it is about."""

    check: str
    severity: Severity
    message: str
    record_id: str | None = None
    record_type: str | None = None

    @classmethod
    def from_check(cls, check: Check) -> Finding:
        return cls(
            check=check.name,
            severity="error" if not check.ok else "warning",
            message=check.detail,
            record_id=check.record_id,
            record_type=check.record_type,
        )


def findings_of(checks: tuple[Check, ...]) -> tuple[Finding, ...]:
    """Findings for every failed or warning check, in check order."""
    return tuple(Finding.from_check(c) for c in checks if not c.ok or c.warning)


# --- parsed proof --------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchInfo:
    """The ``batch`` part of a proof: where the leaf sits in which anchored tree."""

    seq: int
    tree_size: int
    leaf_index: int
    root: bytes
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class AnchorRef:
    """The ``anchor`` part of a proof: what the proof claims about the chain.

    ``registry`` and ``tx_hash`` are kept lowercase with their ``0x`` prefix.
    """

    chain_id: int
    registry: str
    tx_hash: str
    block_number: int
    block_timestamp: int


@dataclass(frozen=True, eq=False)
class Proof:
    """A parsed ``jianzheng-proof/1`` document."""

    format: str
    record: Mapping[str, Any]
    leaf_hash: bytes
    batch: BatchInfo
    anchor: AnchorRef
    #: The log hash of leaves and nodes (§7.7): "sha256" (absent in the JSON) or "sm3".
    hash: HashAlg = "sha256"

    @property
    def record_id(self) -> str | None:
        value = self.record.get("id")
        return value if isinstance(value, str) else None

    @property
    def record_type(self) -> str | None:
        value = self.record.get("type")
        return value if isinstance(value, str) else None


# --- chain data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorInfo:
    """What ``anchorOf(root)`` returns for an anchored root."""

    seq: int
    leaf_count: int
    timestamp: int
    block_number: int


@dataclass(frozen=True)
class RevocationInfo:
    """What ``revocationOf(subject)`` returns for a revoked subject."""

    subject: bytes
    reason: bytes
    timestamp: int


@dataclass(frozen=True)
class Log:
    """One event log of a transaction receipt. ``address`` is lowercase ``0x`` hex."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class Receipt:
    """The parts of a transaction receipt the verifier reads."""

    tx_hash: str
    status: int
    block_number: int
    logs: tuple[Log, ...]


@dataclass(frozen=True)
class Block:
    """The parts of a block header the verifier reads."""

    number: int
    hash: str
    timestamp: int


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofVerification:
    """The result of verifying one proof; one field per check (INTERFACE.md §3).

    1. ``record_hash``: the record's canonical hash equals ``leaf_hash``;
    2. ``inclusion``: the audit path leads from ``leaf_hash`` to ``root``;
    3. ``anchor``: ``anchorOf(root)`` returns the claimed seq, tree size, block and time;
    4. ``anchor_event``: the transaction emitted the matching ``Anchored`` event;
    5. ``chain_id``: the node's chain id is the proof's (and the pinned one);
    6. ``registry``: the proof's registry is the pinned one (a warning when not pinned).

    A check that needed the chain when it could not be reached is a failed check named
    ``chain_unreachable``.
    """

    record_id: str | None
    record_type: str | None
    record_hash: Check
    inclusion: Check
    anchor: Check
    anchor_event: Check
    chain_id: Check
    registry: Check
    bottom_line: bool = field(init=False)
    findings: tuple[Finding, ...] = field(init=False)

    def __post_init__(self) -> None:
        checks = self.checks
        object.__setattr__(self, "bottom_line", all(c.ok for c in checks))
        object.__setattr__(self, "findings", findings_of(checks))

    @property
    def checks(self) -> tuple[Check, ...]:
        return (
            self.record_hash,
            self.inclusion,
            self.anchor,
            self.anchor_event,
            self.chain_id,
            self.registry,
        )


@dataclass(frozen=True)
class BundleVerification:
    """The result of verifying an evidence bundle.

    ``proofs`` holds the verification of every proof (the revocation proof last, if any);
    ``checks`` the bundle-level checks (files, parent links, report, revocation, then the
    sealed PDF, witness signatures and batch sequence, then any caller's extra checks).
    ``status`` is the report's standing read from the chain, or None when it could not be
    read. ``bottom_line`` is True when every check passed;
    a revoked report can still have a true bottom line (the CLI then exits 3).
    """

    code: str
    report_record_id: str
    proofs: tuple[ProofVerification, ...]
    checks: tuple[Check, ...]
    status: ReportStatus | None
    revocation: RevocationInfo | None
    #: The §7.2 warnings the records show (verifier.custody.EvidenceWarning), also among
    #: ``checks`` as WARN checks named by their code.
    warnings: tuple[EvidenceWarning, ...] = ()
    bottom_line: bool = field(init=False)
    findings: tuple[Finding, ...] = field(init=False)

    def __post_init__(self) -> None:
        checks = self.all_checks
        object.__setattr__(self, "bottom_line", all(c.ok for c in checks))
        object.__setattr__(self, "findings", findings_of(checks))

    @property
    def all_checks(self) -> tuple[Check, ...]:
        per_proof = tuple(c for p in self.proofs for c in p.checks)
        return per_proof + self.checks
