"""Records of the traceable chain (DESIGN.md "The traceable chain"; R7-R13).

project -> contract -> commission -> sample -> {seal, witness, receipt, test_record};
any record may list `media` records (images, video, data files) among its parents.

Each request model below is the documented input of `POST /api/v1/{collection}`;
`create_record` checks the parents (exist, same institution, allowed type), adds what
the server derives (witness identity from the registered key, the seal check at
receipt, late-upload flags) and appends one evidence record whose `parents` are the
parents' leaf hashes and whose `files` name stored blobs by SHA-256.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from stdnum.cn import ric

from service.clock import rfc3339, utc_now
from service.domain import rules, seals
from service.domain.evidence import (
    MAX_PARENTS,
    FileRef,
    append_record,
    load_records,
    new_record_id,
)
from service.domain.imagefacts import image_facts
from service.domain.masking import mask_id_number  # the one ID-masking rule (R19)
from service.domain.nonconforming import record_nonconforming
from service.domain.uploads import take_upload
from service.errors import Conflict, Forbidden, Invalid, JianzhengError, NotFound
from service.settings import Settings
from service.storage.blobs import BlobStore
from service.storage.models import (
    Record,
    RecordFlag,
    RecordParent,
    SampleCode,
    TestCorrection,
    Upload,
    WitnessKey,
)
from verifier.errors import CanonicalizationError
from verifier.merkle import leaf_hash

__all__ = ["record_nonconforming", "create_record", "COLLECTIONS"]

#: A timestamp further than this in the future is refused (clock skew allowance).
MAX_CLOCK_SKEW_S = 300
MAX_TEXT = 2000
MAX_ITEMS = 200
MAX_IMAGES = 64

RecordId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$"),
    Field(description="Record id (ULID) returned by an earlier POST"),
]
Sha256Hex = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{64}$"), Field(description="lowercase hex SHA-256")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")]
SampleCodeStr = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    Field(description="the sample's unique code (唯一性编码), unique per institution"),
]
UsccStr = Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]
Base64Sig = Annotated[str, StringConstraints(min_length=8, max_length=seals.MAX_SIGNATURE_CHARS)]
#: RFC 3339 with an explicit offset, kept as sent because the witness signed these bytes.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(value: str) -> datetime:
    if not _RFC3339.match(value):
        raise ValueError("must be RFC 3339 with a time zone, e.g. 2026-11-22T10:00:00+08:00")
    text = value.replace("Z", "+00:00")
    if "." in text:  # Python takes at most 6 fractional digits
        head, _, rest = text.partition(".")
        digits = re.match(r"\d+", rest)
        assert digits is not None
        text = head + "." + digits.group(0)[:6].ljust(6, "0") + rest[digits.end():]
    return datetime.fromisoformat(text)


SignedTime = Annotated[str, StringConstraints(max_length=40)]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class _RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parents: list[RecordId] = Field(
        default_factory=list,
        max_length=MAX_PARENTS,
        description="ids of the records this one derives from (see each collection's rules)",
    )


class Party(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="organisation name")
    uscc: UsccStr | None = Field(default=None, description="unified social credit code")


class ProjectIn(_RecordIn):
    """工程项目. Parents: optional `media`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "深圳湾科技园3号楼",
                    "project_no": "440305202611220101",
                    "location": "深圳市南山区科苑南路",
                    "region": "440305",
                    "construction_unit": {"name": "深圳湾建设有限公司"},
                    "supervision_unit": {"name": "鹏城监理有限公司"},
                    "contractor": {"name": "中建某局"},
                    "parents": [],
                }
            ]
        },
    )

    name: Name = Field(description="工程名称")
    project_no: Identifier | None = Field(default=None, description="工程编号 / 施工许可证号")
    location: ShortText = Field(description="工程地点")
    region: Annotated[str, StringConstraints(pattern=r"^[1-8][0-9]{5}$")] | None = Field(
        default=None, description="6-digit administrative region code"
    )
    construction_unit: Party = Field(description="建设单位")
    supervision_unit: Party | None = Field(default=None, description="监理单位")
    contractor: Party | None = Field(default=None, description="施工单位")
    supervision_agency: Name | None = Field(default=None, description="属地质量监督机构")


class ContractParty(Party):
    role: Literal["client", "lab", "other"] = Field(description="委托方 / 检测机构 / other")


class ContractIn(_RecordIn):
    """检测合同 (multipart: `meta` = this JSON, `file` = the signed PDF; or `upload_id`).

    Parents: exactly one `project`, optional `media`. Uploaded more than
    `rules.contract_upload_working_days` working days after `signed_on` → flag
    `contract_late` (R11).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "contract_no": "HT-2026-0183",
                    "signed_on": "2026-11-20",
                    "parties": [
                        {"role": "client", "name": "深圳湾建设有限公司"},
                        {"role": "lab", "name": "深圳市某检测有限公司"},
                    ],
                    "parents": ["01JD3Q2Y7ZK1M8R0F4T6W9XH5C"],
                }
            ]
        },
    )

    contract_no: Identifier = Field(description="合同编号")
    signed_on: date = Field(description="signing date (local calendar)")
    parties: list[ContractParty] = Field(min_length=2, max_length=10)
    scope: LongText | None = Field(default=None, description="检测范围")
    upload_id: RecordId | None = Field(
        default=None, description="a completed resumable upload instead of the `file` part"
    )


class CommissionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="检测项目")
    standard: Name | None = Field(default=None, description="检测依据 (standard)")
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)


class CommissionIn(_RecordIn):
    """委托单. Parents: exactly one `contract`, optional `media`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "commission_no": "WT-2026-11-0042",
                    "commissioned_on": "2026-11-21",
                    "client": {"name": "深圳湾建设有限公司"},
                    "items": [{"name": "混凝土抗压强度", "standard": "GB/T 50081-2019"}],
                    "parents": ["01JD3Q2Y7ZK1M8R0F4T6W9XH5D"],
                }
            ]
        },
    )

    commission_no: Identifier = Field(description="委托编号")
    commissioned_on: date
    client: Party = Field(description="委托单位")
    items: list[CommissionItem] = Field(min_length=1, max_length=MAX_ITEMS)


class SampleIn(_RecordIn):
    """样品. Parents: exactly one `commission`, optional `media`. `sample_code` is
    unique per institution (409 `duplicate_sample_code`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sample_code": "YP2026112200017",
                    "name": "混凝土试块",
                    "material": "C30 混凝土",
                    "specification": "150mm×150mm×150mm",
                    "quantity": 3,
                    "unit": "组",
                    "sampled_at": "2026-11-22T09:30:00+08:00",
                    "parents": ["01JD3Q2Y7ZK1M8R0F4T6W9XH5E"],
                }
            ]
        },
    )

    sample_code: SampleCodeStr
    name: Name = Field(description="样品名称")
    material: Name = Field(description="material / grade")
    specification: Name | None = None
    quantity: float = Field(gt=0, le=1e9)
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    represented_quantity: Name | None = Field(default=None, description="代表批量")
    sampled_at: AwareDatetime | None = None
    sampling_location: ShortText | None = None

    _utc_sampled = field_validator("sampled_at")(lambda v: _utc(v) if v else v)


def _check_signed_time(value: str) -> str:
    parse_rfc3339(value)
    return value


class SealIn(_RecordIn):
    """电子封志, signed by the witness at sampling (R7).

    Parents: exactly one `sample` (whose code is `sample_code`) and the `media` records
    of the images in `images`. `signature` is base64 of the witness key's signature over
    RFC 8785 canonical JSON of `{"format": "jianzheng-seal/1", "sample_code",
    "sealed_at", "place", "images"}` with these fields exactly as sent. A bad signature
    is refused with 422 `seal_signature_invalid`.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sample_code": "YP2026112200017",
                    "sealed_at": "2026-11-22T09:41:00+08:00",
                    "place": "深圳湾科技园3号楼 施工现场 标养室",
                    "images": ["9f2b...64 hex"],
                    "witness_key_id": "01JD3Q2Y7ZK1M8R0F4T6W9XH5F",
                    "signature": "base64...",
                    "parents": ["<sample id>", "<media id>"],
                }
            ]
        },
    )

    sample_code: SampleCodeStr
    sealed_at: SignedTime = Field(description="RFC 3339 with offset, as signed")
    place: ShortText = Field(description="where the seal was applied, as signed")
    images: list[Sha256Hex] = Field(min_length=1, max_length=MAX_IMAGES)
    witness_key_id: RecordId
    signature: Base64Sig

    _t = field_validator("sealed_at")(_check_signed_time)


WitnessActivity = Literal["sampling", "making", "marking", "sealing", "delivery", "onsite_testing"]


class WitnessIn(_RecordIn):
    """见证记录 (R8): who witnessed, where, when, what, with key images.

    Parents: the `sample` records named in `sample_codes`, the `media` records of
    `images`, optionally the `seal`. The witness's identity comes from the registered
    key. `signature` is base64 over RFC 8785 canonical JSON of `{"format":
    "jianzheng-witness/1", "sample_codes", "witnessed_at", "location", "activities",
    "images"}` (422 `witness_signature_invalid` otherwise).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "witness_key_id": "01JD3Q2Y7ZK1M8R0F4T6W9XH5F",
                    "sample_codes": ["YP2026112200017"],
                    "witnessed_at": "2026-11-22T09:45:00+08:00",
                    "location": "22.5431,113.9365 深圳湾科技园3号楼",
                    "activities": ["sampling", "marking", "sealing"],
                    "images": ["9f2b...64 hex"],
                    "signature": "base64...",
                    "parents": ["<sample id>", "<media id>"],
                }
            ]
        },
    )

    witness_key_id: RecordId
    sample_codes: list[SampleCodeStr] = Field(min_length=1, max_length=MAX_ITEMS)
    witnessed_at: SignedTime
    location: ShortText = Field(description="place (address or coordinates), as signed")
    activities: list[WitnessActivity] = Field(min_length=1, max_length=6)
    images: list[Sha256Hex] = Field(min_length=1, max_length=MAX_IMAGES)
    signature: Base64Sig

    _t = field_validator("witnessed_at")(_check_signed_time)


class ReceiptIn(_RecordIn):
    """收样/验封 by the lab (R7). Parents: exactly one `seal`, optional `media`.

    The server re-verifies the seal (record intact, witness signature, the code the lab
    read off the sample equals the sealed code, the lab saw the seal intact) and stores
    the result in the record: a failed check is recorded (201), never hidden.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "received_at": "2026-11-22T14:00:00+08:00",
                    "received_by": "李四",
                    "observed_sample_code": "YP2026112200017",
                    "seal_intact": True,
                    "accepted": True,
                    "condition": "试块完好",
                    "parents": ["<seal id>"],
                }
            ]
        },
    )

    received_at: AwareDatetime
    received_by: Name = Field(description="收样人")
    observed_sample_code: SampleCodeStr = Field(description="code read from the sample's tag")
    seal_intact: bool = Field(description="the lab found the seal/tag undamaged")
    accepted: bool = Field(description="the lab accepted the sample for testing")
    condition: LongText | None = Field(default=None, description="样品状况")

    _u = field_validator("received_at")(_utc)


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier = Field(description="设备编号")
    name: Name
    calibration_due: date | None = Field(default=None, description="检定/校准有效期")


class TestRecordIn(_RecordIn):
    """检测数据 (R10, R13). Parents: one or more `sample`, optional `receipt`,
    `test_record` (the one `corrects` names) and `media` (raw data file, curves, images).

    Raw data is either inline JSON (`raw_data`) or a file (`raw_data_file`, the SHA-256
    of a `media` parent's file). Data arriving later than the acquisition mode allows
    after `finished_at` is flagged `test_data_late`. Changing data is a new record with
    `corrects` and `correction_reason` (R10).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "test_item": "混凝土抗压强度",
                    "standard": "GB/T 50081-2019",
                    "device": {"id": "YJ-2000-07", "name": "压力试验机"},
                    "acquisition": "auto",
                    "started_at": "2026-11-22T15:00:00+08:00",
                    "finished_at": "2026-11-22T15:06:00+08:00",
                    "raw_data": {"loads_kN": [812.4, 798.1, 825.0], "area_mm2": 22500},
                    "results": {"strength_MPa": 36.1},
                    "tester": "王五",
                    "parents": ["<sample id>", "<receipt id>"],
                }
            ]
        },
    )
    __test__: ClassVar[bool] = False  # not a pytest class

    test_item: Name = Field(description="检测项目")
    standard: Name | None = None
    device: Device
    acquisition: Literal["auto", "manual"] = Field(description="automatic acquisition or manual")
    started_at: AwareDatetime
    finished_at: AwareDatetime
    raw_data: JsonValue | None = Field(default=None, description="raw data as JSON")
    raw_data_file: Sha256Hex | None = Field(default=None, description="raw data as a media file")
    results: dict[str, JsonValue] | None = None
    tester: Name | None = Field(default=None, description="检测员")
    corrects: RecordId | None = Field(default=None, description="test record this one corrects")
    correction_reason: LongText | None = None

    _u = field_validator("started_at", "finished_at")(_utc)

    @model_validator(mode="after")
    def _shape(self) -> TestRecordIn:
        if (self.raw_data is None) == (self.raw_data_file is None):
            raise ValueError("give exactly one of raw_data and raw_data_file")
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        if (self.corrects is None) != (self.correction_reason is None):
            raise ValueError("corrects and correction_reason go together")
        return self


class MediaIn(_RecordIn):
    """Key images, video and data files (R9). Multipart with `meta` (this JSON) and
    `file`, or this JSON alone with `upload_id` of a completed resumable upload.
    Parents: none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "image",
                    "captured_at": "2026-11-22T09:40:00+08:00",
                    "description": "取样照片",
                    "device": "执法记录仪 A12",
                },
                {"kind": "video", "upload_id": "01JD3Q2Y7ZK1M8R0F4T6W9XH5G"},
            ]
        },
    )

    kind: Literal["image", "video", "audio", "document", "data"]
    captured_at: AwareDatetime | None = None
    description: LongText | None = None
    device: Name | None = None
    location: ShortText | None = None
    upload_id: RecordId | None = None

    _u = field_validator("captured_at")(lambda v: _utc(v) if v else v)


class WitnessKeyIn(BaseModel):
    """A witness's public key, registered by the lab before the witness signs."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "witness": {
                        "name": "张三",
                        "id_number": "11010519491231002X",
                        "unit": "鹏城监理有限公司",
                    },
                    "algorithm": "ed25519",
                    "public_key": "MCowBQYDK2VwAyEA...",
                }
            ]
        },
    )

    class Witness(BaseModel):
        model_config = ConfigDict(extra="forbid")

        name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
        id_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{17}[0-9Xx]$")] = Field(
            description="居民身份证号 (checked; masked on public views)"
        )
        unit: Name | None = Field(default=None, description="见证单位")

    witness: Witness
    algorithm: Literal["ed25519", "ecdsa-p256"]
    public_key: Annotated[str, StringConstraints(min_length=40, max_length=4096)] = Field(
        description="PEM or base64 DER SubjectPublicKeyInfo"
    )


COLLECTIONS: dict[str, tuple[str, type[_RecordIn]]] = {
    "projects": ("project", ProjectIn),
    "contracts": ("contract", ContractIn),
    "commissions": ("commission", CommissionIn),
    "samples": ("sample", SampleIn),
    "seals": ("seal", SealIn),
    "witnesses": ("witness", WitnessIn),
    "receipts": ("receipt", ReceiptIn),
    "test-records": ("test_record", TestRecordIn),
    "media": ("media", MediaIn),
}


@dataclass(frozen=True)
class ParentRule:
    allowed: frozenset[str]
    #: type -> (min, max) count; max None = unbounded.
    counts: Mapping[str, tuple[int, int | None]]


def _rule(allowed: set[str], **counts: tuple[int, int | None]) -> ParentRule:
    return ParentRule(frozenset(allowed | {"media"}), counts)


PARENT_RULES: dict[str, ParentRule] = {
    "project": _rule(set()),
    "contract": _rule({"project"}, project=(1, 1)),
    "commission": _rule({"contract"}, contract=(1, 1)),
    "sample": _rule({"commission"}, commission=(1, 1)),
    "seal": _rule({"sample"}, sample=(1, 1)),
    "witness": _rule({"sample", "seal"}, sample=(1, None)),
    "receipt": _rule({"seal"}, seal=(1, 1)),
    "test_record": _rule({"sample", "receipt", "test_record"}, sample=(1, None)),
    "media": ParentRule(frozenset(), {}),
}


@dataclass(frozen=True)
class StoredFile:
    """A file already in the blob store."""

    sha256: str
    size: int
    media_type: str


def record_json(record: Record) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(record.canonical)
    return obj


def resolve_parents(
    session: Session, ids: Sequence[str], institution: str, child_type: str
) -> list[Record]:
    """Load the parents; 404 unknown, 403 another institution's, 422 wrong type or count."""
    if len(set(ids)) != len(ids):
        raise Invalid("parent_duplicate", "a parent is listed twice")
    found = load_records(session, ids)
    for pid in ids:
        if pid not in found:
            raise NotFound("parent_not_found", f"no record {pid}", parent=pid)
    for pid in ids:
        if found[pid].institution != institution:
            raise Forbidden(
                "forbidden", f"record {pid} belongs to another institution", parent=pid
            )
    rule = PARENT_RULES[child_type]
    for pid in ids:
        if found[pid].type not in rule.allowed:
            raise Invalid(
                "parent_type_invalid",
                f"a {child_type} cannot derive from a {found[pid].type} ({pid}); allowed: "
                + ", ".join(sorted(rule.allowed)),
                parent=pid,
            )
    counts = Counter(found[pid].type for pid in ids)
    for ptype, (low, high) in rule.counts.items():
        n = counts.get(ptype, 0)
        if n < low:
            raise Invalid(
                "parent_required", f"a {child_type} needs {low} {ptype} parent(s)"
            )
        if high is not None and n > high:
            raise Invalid(
                "parent_count_invalid", f"a {child_type} takes at most {high} {ptype}"
            )
    return [found[pid] for pid in ids]


def _media_hashes(parents: Sequence[Record]) -> set[str]:
    out: set[str] = set()
    for p in parents:
        if p.type == "media":
            out.update(f["sha256"] for f in record_json(p)["files"])
    return out


def _require_images(images: Sequence[str], parents: Sequence[Record], what: str) -> None:
    have = _media_hashes(parents)
    missing = [h for h in images if h not in have]
    if missing:
        raise Invalid(
            "image_not_in_parents",
            f"{what} names image {missing[0]} but no media parent holds it",
        )


def _sample_code_of(record: Record) -> str:
    code = record_json(record)["body"].get("sample_code")
    return str(code)


def _witness_key(session: Session, key_id: str, institution: str) -> WitnessKey:
    key = session.get(WitnessKey, key_id)
    if key is None:
        raise NotFound("witness_key_not_found", f"no witness key {key_id}")
    if key.institution != institution:
        raise Forbidden("forbidden", "this witness key belongs to another institution")
    if key.revoked_at is not None:
        raise Invalid("witness_key_revoked", f"witness key {key_id} is revoked")
    return key


def _key_json(key: WitnessKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "algorithm": key.algorithm,
        "public_key": seals.ParsedKey(key.algorithm, key.public_key).b64,
        "fingerprint": key.fingerprint,
    }


def _check_signature(key: WitnessKey, payload: Mapping[str, Any], sig_text: str, code: str) -> None:
    sig = seals.decode_signature(sig_text)
    try:
        message = seals.signed_bytes(payload)
    except CanonicalizationError as exc:
        raise Invalid(code, f"the signed fields cannot be canonicalized: {exc}") from exc
    if sig is None or not seals.verify_signature(key.algorithm, key.public_key, message, sig):
        raise Invalid(
            code, "the signature does not verify with the witness's registered key"
        )


def _not_in_future(ts: datetime, now: datetime, field: str) -> None:
    if ts > now + timedelta(seconds=MAX_CLOCK_SKEW_S):
        raise Invalid("timestamp_in_future", f"{field} is in the future")


def _dump(model: BaseModel, *exclude: str) -> dict[str, Any]:
    body: dict[str, Any] = model.model_dump(
        mode="json", exclude={"parents", "upload_id", *exclude}, exclude_none=True
    )
    return body


def create_record(
    session: Session,
    settings: Settings,
    blobs: BlobStore,
    *,
    collection: str,
    institution: str,
    payload: _RecordIn,
    file: StoredFile | None = None,
) -> Record:
    """Validate against the chain rules and append the evidence record (caller commits)."""
    record_type, _model = COLLECTIONS[collection]
    now = utc_now()
    parents = resolve_parents(session, payload.parents, institution, record_type)
    if isinstance(payload, SampleIn) and sample_code_taken(
        session, institution, payload.sample_code
    ):
        raise Conflict(
            "duplicate_sample_code", f"sample code {payload.sample_code} is already registered"
        )
    files: list[FileRef] = []
    flags: list[rules.Flag] | None = None
    body: dict[str, Any]
    upload: Upload | None = None

    if isinstance(payload, (ContractIn, MediaIn)):
        if payload.upload_id is not None:
            if file is not None:
                raise Invalid("file_twice", "give a file part or upload_id, not both")
            upload = take_upload(session, blobs, payload.upload_id, institution)
            assert upload.sha256 is not None
            file = StoredFile(upload.sha256, upload.length, upload.media_type)
        if file is None:
            raise Invalid("file_required", f"a {record_type} needs a file")

    if isinstance(payload, ProjectIn):
        body = _dump(payload)
    elif isinstance(payload, ContractIn):
        assert file is not None
        if not _is_pdf(blobs, file.sha256):
            raise Invalid("file_type_invalid", "the contract file is not a PDF")
        today = rules.local_date(now, settings.rules.timezone)
        if payload.signed_on > today:
            raise Invalid("date_in_future", "signed_on is in the future")
        flags = rules.contract_flags(
            payload.signed_on,
            now,
            settings.rules,
            rules.WorkingCalendar.from_settings(settings.rules),
        )
        body = _dump(payload)
        files.append(FileRef("contract_pdf", file.sha256, file.size, "application/pdf"))
    elif isinstance(payload, CommissionIn):
        body = _dump(payload)
    elif isinstance(payload, SampleIn):
        body = _dump(payload)
    elif isinstance(payload, SealIn):
        sample = next(p for p in parents if p.type == "sample")
        if _sample_code_of(sample) != payload.sample_code:
            raise Invalid(
                "sample_code_mismatch", "sample_code is not the code of the sample parent"
            )
        _require_images(payload.images, parents, "the seal")
        key = _witness_key(session, payload.witness_key_id, institution)
        signed = seals.seal_payload(
            payload.sample_code, payload.sealed_at, payload.place, payload.images
        )
        _check_signature(key, signed, payload.signature, "seal_signature_invalid")
        _not_in_future(parse_rfc3339(payload.sealed_at), now, "sealed_at")
        body = {
            "sample_code": payload.sample_code,
            "signed": signed,
            "signature": payload.signature,
            "witness_key": _key_json(key),
            "witness": _witness_identity(key),
        }
    elif isinstance(payload, WitnessIn):
        codes = sorted(_sample_code_of(p) for p in parents if p.type == "sample")
        if sorted(payload.sample_codes) != codes:
            raise Invalid(
                "sample_code_mismatch", "sample_codes are not the codes of the sample parents"
            )
        _require_images(payload.images, parents, "the witness record")
        key = _witness_key(session, payload.witness_key_id, institution)
        signed = seals.witness_payload(
            payload.sample_codes,
            payload.witnessed_at,
            payload.location,
            list(payload.activities),
            payload.images,
        )
        _check_signature(key, signed, payload.signature, "witness_signature_invalid")
        _not_in_future(parse_rfc3339(payload.witnessed_at), now, "witnessed_at")
        body = {
            "witness": _witness_identity(key),
            "signed": signed,
            "signature": payload.signature,
            "witness_key": _key_json(key),
        }
    elif isinstance(payload, ReceiptIn):
        seal = next(p for p in parents if p.type == "seal")
        _not_in_future(payload.received_at, now, "received_at")
        seal_obj = record_json(seal)
        check = seals.check_stored_seal(
            seal_obj,
            canonical_matches_leaf=leaf_hash(seal.canonical).hex() == seal.leaf_hash,
            observed_sample_code=payload.observed_sample_code,
            seal_intact=payload.seal_intact,
        )
        body = {
            **_dump(payload),
            "sample_code": seal_obj.get("body", {}).get("sample_code"),
            "seal_record_id": seal.id,
            "seal_check": check.as_json(),
        }
    elif isinstance(payload, TestRecordIn):
        _not_in_future(payload.finished_at, now, "finished_at")
        if payload.raw_data_file is not None and payload.raw_data_file not in _media_hashes(
            parents
        ):
            raise Invalid(
                "image_not_in_parents", "raw_data_file is not the file of a media parent"
            )
        if payload.corrects is not None:
            corrected = [p for p in parents if p.id == payload.corrects]
            if not corrected or corrected[0].type != "test_record":
                raise Invalid(
                    "parent_required", "corrects must name a test_record among the parents"
                )
            _check_correction(session, corrected[0], parents)
        flags = rules.test_data_flags(payload.acquisition, payload.finished_at, now, settings.rules)
        body = _dump(payload, "raw_data")
        if payload.raw_data is not None:
            body["raw_data"] = payload.raw_data
    elif isinstance(payload, MediaIn):
        assert file is not None
        body = _dump(payload)
        files.append(FileRef("media", file.sha256, file.size, file.media_type))
        if payload.kind == "image":
            facts = image_facts(blobs.path(file.sha256), file.media_type, settings.rules.timezone)
            flags = rules.media_flags(facts, payload.captured_at, now, settings.rules)
    else:  # pragma: no cover - COLLECTIONS and this switch list the same models
        raise AssertionError(type(payload))

    if flags is not None:
        body["flags"] = rules.flags_json(flags)
    record_id = new_record_id()
    try:
        record = append_record(
            session,
            type=record_type,
            institution=institution,
            body=body,
            parents=parents,
            files=files,
            record_id=record_id,
            created_at=now,
        )
    except CanonicalizationError as exc:
        raise Invalid("not_canonicalizable", str(exc)) from exc

    if isinstance(payload, SampleIn):
        row = SampleCode(
            institution=institution, sample_code=payload.sample_code, record_id=record.id
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError as exc:
            session.rollback()
            raise Conflict(
                "duplicate_sample_code",
                f"sample code {payload.sample_code} is already registered",
            ) from exc
    if isinstance(payload, TestRecordIn) and payload.corrects is not None:
        session.add(TestCorrection(corrected_id=payload.corrects, correction_id=record.id))
        try:
            session.flush()
        except IntegrityError as exc:  # another correction of the same record won the race
            session.rollback()
            raise _already_corrected(
                payload.corrects, correction_of(session, payload.corrects)
            ) from exc
    if upload is not None:
        session.execute(
            update(Upload)
            .where(Upload.id == upload.id)
            .values(record_id=record.id)
            .execution_options(synchronize_session=False)
        )
    for flag in flags or ():
        session.add(
            RecordFlag(
                record_id=record.id,
                institution=institution,
                record_type=record_type,
                rule=flag.rule,
                detail=json.dumps(flag.as_json(), ensure_ascii=False, sort_keys=True),
                created_at=now,
            )
        )
    return record


def record_summary(record: Record) -> dict[str, Any]:
    """The answer to a record POST: id, leaf, type, time, and what the server derived."""
    obj = record_json(record)
    body = obj.get("body", {})
    out: dict[str, Any] = {
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "type": record.type,
        "created_at": obj["created_at"],
    }
    if "flags" in body:
        out["flags"] = body["flags"]
    if "seal_check" in body:
        out["seal_check"] = body["seal_check"]
    return out


def find_record(session: Session, record_id: str) -> Record | None:
    """The record with this id (None for an unknown or impossible id)."""
    return session.get(Record, record_id) if len(record_id) <= 26 else None


def own_witness_key(session: Session, key_id: str, institution: str) -> WitnessKey:
    """The institution's witness key: 404 `witness_key_not_found`, 403 if another's."""
    key = session.get(WitnessKey, key_id) if len(key_id) <= 26 else None
    if key is None:
        raise NotFound("witness_key_not_found", f"no witness key {key_id}")
    if key.institution != institution:
        raise Forbidden("forbidden", "this witness key belongs to another institution")
    return key


def correction_of(session: Session, test_record_id: str) -> str | None:
    """The id of the test record that corrects `test_record_id` (R10), or None."""
    return session.scalar(
        select(TestCorrection.correction_id).where(TestCorrection.corrected_id == test_record_id)
    )


def _already_corrected(corrected_id: str, by: str | None) -> JianzhengError:
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


def _check_correction(session: Session, corrected: Record, parents: Sequence[Record]) -> None:
    """A correction (R10: data changes only through a recorded, reviewable correction)
    tests the same sample as the record it corrects, and corrects the latest version: a
    record corrected once is superseded, so the history stays one line (a race between
    two corrections is settled by `test_corrections`' primary key in `create_record`)."""
    already = correction_of(session, corrected.id)
    if already is not None:
        raise _already_corrected(corrected.id, already)
    samples = {p.id for p in parents if p.type == "sample"}
    if not samples & _sample_parents(session, corrected.id):
        raise Invalid(
            "correction_sample_mismatch",
            "a correction must name a sample of the test record it corrects",
        )


def _witness_identity(key: WitnessKey) -> dict[str, Any]:
    out: dict[str, Any] = {"name": key.witness_name, "id_number": key.witness_id_number}
    if key.witness_unit:
        out["unit"] = key.witness_unit
    return out


def _is_pdf(blobs: BlobStore, sha256: str) -> bool:
    with blobs.path(sha256).open("rb") as fh:
        head = fh.read(1024)
    return b"%PDF-" in head


def sample_code_taken(session: Session, institution: str, code: str) -> bool:
    return (
        session.scalar(
            select(SampleCode.record_id).where(
                SampleCode.institution == institution, SampleCode.sample_code == code
            )
        )
        is not None
    )


def register_witness_key(session: Session, institution: str, data: WitnessKeyIn) -> WitnessKey:
    """Register a witness's public key (caller commits); 409 if already registered."""
    if not ric.is_valid(data.witness.id_number):
        raise Invalid(
            "id_number_invalid", "witness.id_number is not a valid resident ID number"
        )
    parsed = seals.parse_public_key(data.public_key, data.algorithm)
    existing = session.scalar(
        select(WitnessKey.key_id).where(
            WitnessKey.institution == institution, WitnessKey.fingerprint == parsed.fingerprint
        )
    )
    if existing is not None:
        raise Conflict(
            "witness_key_exists", f"this key is registered as {existing}", key_id=existing
        )
    key = WitnessKey(
        key_id=new_record_id(),
        institution=institution,
        algorithm=parsed.algorithm,
        public_key=parsed.der,
        fingerprint=parsed.fingerprint,
        witness_name=data.witness.name,
        witness_id_number=data.witness.id_number.upper(),
        witness_unit=data.witness.unit,
        created_at=utc_now(),
    )
    session.add(key)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("witness_key_exists", "this key is already registered") from exc
    return key


def witness_key_json(key: WitnessKey, *, mask: bool = True) -> dict[str, Any]:
    id_number = key.witness_id_number
    return {
        **_key_json(key),
        "witness": {
            "name": key.witness_name,
            "id_number": mask_id_number(id_number) if mask else id_number,
            "unit": key.witness_unit,
        },
        "created_at": rfc3339(key.created_at),
        "revoked": key.revoked_at is not None,
    }


def revoke_witness_key(session: Session, key_id: str, institution: str) -> WitnessKey:
    key = session.get(WitnessKey, key_id)
    if key is None:
        raise NotFound("witness_key_not_found", f"no witness key {key_id}")
    if key.institution != institution:
        raise Forbidden("forbidden", "this witness key belongs to another institution")
    if key.revoked_at is None:
        key.revoked_at = utc_now()
    return key


def flags_of(session: Session, record_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(RecordFlag).where(RecordFlag.record_id == record_id).order_by(RecordFlag.id)
    ).all()
    return [json.loads(r.detail) for r in rows]


def list_flags(
    session: Session,
    *,
    institution: str | None,
    rule: str | None,
    limit: int,
    after_id: int = 0,
    institutions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Flags oldest first; `institutions` limits them to those (an auditor's region)."""
    query = select(RecordFlag).where(RecordFlag.id > after_id)
    if institution is not None:
        query = query.where(RecordFlag.institution == institution)
    if institutions is not None:
        query = query.where(RecordFlag.institution.in_(institutions))
    if rule is not None:
        query = query.where(RecordFlag.rule == rule)
    rows = session.scalars(query.order_by(RecordFlag.id).limit(limit)).all()
    return [
        {
            "id": r.id,
            "record_id": r.record_id,
            "record_type": r.record_type,
            "institution": r.institution,
            "rule": r.rule,
            "detail": json.loads(r.detail),
            "flagged_at": rfc3339(r.created_at),
        }
        for r in rows
    ]
