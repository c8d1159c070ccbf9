"""Models of the answers the domain builds as plain JSON, so the OpenAPI document's schemas
come from code: routes name them in `responses={status: {"model": …}}`. They describe and
never filter: each route still answers the domain's JSON as built (the wire stays exactly
as INTERFACE.md says); tests/test_openapi.py checks every example against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Hex64 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
Ulid = Annotated[str, Field(pattern="^[0-9A-HJKMNP-TV-Z]{26}$")]


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details with a stable `code` (INTERFACE.md §5)."""

    type: str = Field(description="always `about:blank`")
    title: str = Field(description="the HTTP reason phrase")
    status: int = Field(ge=400, le=599)
    code: str = Field(description="stable machine-readable code")
    detail: str
    errors: list[FieldError] = Field(
        default_factory=list, description="validation errors (422 `validation_error`, …)"
    )


# --------------------------------------------------------------------------- proofs


class ProofRecord(BaseModel):
    """The evidence record (INTERFACE.md §1). Its `files` entries name each file by
    `sha256`, and on an SM3 log (§7.7) by `sm3` too."""

    model_config = ConfigDict(extra="allow")

    type: str
    v: int
    id: str
    institution: str
    created_at: str
    parents: list[str]
    body: dict[str, Any]


class ProofBatch(BaseModel):
    seq: int = Field(ge=1)
    tree_size: int = Field(ge=1)
    leaf_index: int = Field(ge=0)
    root: Hex64
    path: list[Hex64]


class ProofAnchor(BaseModel):
    chain_id: int
    registry: str = Field(description="0x-prefixed address")
    tx_hash: str = Field(pattern="^0x[0-9a-f]{64}$")
    block_number: int
    block_timestamp: int = Field(description="Unix seconds")


class Proof(BaseModel):
    """Inclusion proof of one record, `jianzheng-proof/1` (INTERFACE.md §3): the record, its
    leaf hash, the RFC 6962 audit path (leaf side first) to the batch root, and the
    transaction that anchored the root."""

    format: Literal["jianzheng-proof/1"]
    hash: Literal["sha256", "sm3"] | None = Field(
        default=None,
        description="the log hash (§7.7): present as `sm3` on an SM3 log; absent means SHA-256",
    )
    record: ProofRecord
    leaf_hash: Hex64
    batch: ProofBatch
    anchor: ProofAnchor


# --------------------------------------------------------------------------- public view


class ChainStep(BaseModel):
    record_id: Ulid
    type: str
    leaf_hash: Hex64
    check: str


class PublicWarning(BaseModel):
    code: str = Field(description="a §7.2 warning code, e.g. custody_receipt_missing")
    record_id: str | None = Field(description="the record the warning is about")
    detail: str = Field(description="the warning in plain Chinese")


class PublicReport(BaseModel):
    """What the verification page shows, as JSON: status, the report summary with personal
    data masked, the signature check, the anchor, revocation and the traceable chain with
    a check per record."""

    code: str
    code_display: str
    verify_url: str
    status: Literal["genuine", "revoked", "superseded", "pending_anchor", "tampered"]
    status_text: dict[str, Any] = Field(default_factory=dict)
    report: dict[str, Any] | None
    signature: dict[str, Any] | None = None
    sealed_pdf: dict[str, Any] | None = None
    anchor: dict[str, Any] | None = None
    revocation: dict[str, Any] | None = None
    superseded_by: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None
    evidence_complete: bool = Field(
        description="false while a custody gap is open (§7.2: every sample sealed, witnessed "
        "and received, no check failed)"
    )
    warnings: list[PublicWarning] = Field(
        description="§7.2 warnings of the report's evidence (custody gaps, uncited tests, …)"
    )
    chain: list[ChainStep]


# --------------------------------------------------------------------------- bundles


class PendingPart(BaseModel):
    record_id: Ulid
    type: str
    reason: str


class BundlePending(BaseModel):
    """Parts of the report are not anchored yet (or its revocation is not on the chain
    yet); ask again after `Retry-After` seconds."""

    status: Literal["pending"]
    code: str
    detail: str
    pending: list[PendingPart]
    retry_after_s: int = Field(ge=1)


# --------------------------------------------------------------------------- signed QR (§7.5)


class TrustKey(BaseModel):
    model_config = ConfigDict(extra="allow")

    kid: str
    alg: str
    certificate: str = Field(description="DER, base64")
    not_before: int = Field(description="Unix seconds")
    not_after: int = Field(description="Unix seconds")


class TrustSignature(BaseModel):
    alg: str
    root_id: str
    value: str = Field(description="ES256 r‖s, base64")


class TrustList(BaseModel):
    """jianzheng-trust/1: the QR-signing keys, signed by the platform root."""

    model_config = ConfigDict(extra="allow")

    format: Literal["jianzheng-trust/1"]
    issued_at: int = Field(description="Unix seconds")
    issuer: str
    keys: list[TrustKey]
    signature: TrustSignature


class QrCheckStep(BaseModel):
    name: str
    ok: bool
    detail: str


class QrCheck(BaseModel):
    """A signed QR payload checked against the trust list and the platform's record."""

    parsed: bool
    signature_ok: bool
    facts_match: bool
    kid: str | None
    facts: dict[str, Any] | None
    matches: dict[str, bool | None] = Field(
        description="per fact: true matches the platform's record, false differs, "
        "null not on record"
    )
    checks: list[QrCheckStep]
    problem: str | None
