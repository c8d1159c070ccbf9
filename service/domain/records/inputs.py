"""The documented inputs of `POST /api/v1/{collection}`: one pydantic model per collection
(ProjectIn ... MediaIn), the witness-key registration (WitnessKeyIn), the field types they
share, and the file a contract or media record arrives with (`StoredFile`, `store_file`).

The models check shape only (types, lengths, patterns, which fields go together); what
depends on the database or on other records is checked by the collection's handler
(service/domain/records/handlers.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, ClassVar, Literal

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

from service.domain import seals
from service.domain.evidence import MAX_PARENTS
from service.errors import Invalid
from service.storage.blobs import BlobStore

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


class RecordIn(BaseModel):
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


class ProjectIn(RecordIn):
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


class ContractIn(RecordIn):
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


class CommissionIn(RecordIn):
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
    under_witness: bool | None = Field(
        default=None,
        description="false: not taken under witness (非见证取样), so no seal, witness record "
        "or receipt is expected; absent: taken under witness (见证取样, the default)",
    )


class SampleIn(RecordIn):
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
    under_witness: bool | None = Field(
        default=None,
        description="false: not taken under witness (非见证取样), so no seal, witness record "
        "or receipt is expected; absent: taken under witness (见证取样, the default)",
    )

    _utc_sampled = field_validator("sampled_at")(lambda v: _utc(v) if v else v)


def _check_signed_time(value: str) -> str:
    parse_rfc3339(value)
    return value


class SealIn(RecordIn):
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


class WitnessIn(RecordIn):
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


class ReceiptIn(RecordIn):
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


class Site(BaseModel):
    """Where an on-site test (现场检测) was made: a description, and GPS if known."""

    model_config = ConfigDict(extra="forbid")

    description: ShortText = Field(description="部位 / 桩号 / 轴线, e.g. 3号楼 2-A 轴 桩 P17")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class TestRecordIn(RecordIn):
    """检测数据 (R10, R13, R23, R26).

    Laboratory tests: parents one or more `sample`, optional `receipt`, `test_record`
    (the one `corrects` names) and `media` (raw data file, curves, images).
    On-site tests (现场检测, with `site`): no sample; parents the `test_plan` (检测方案) it
    follows, or — without a plan, flagged `onsite_without_plan` — the `project`; at least
    one `media` parent that is a key image.

    Raw data is either inline JSON (`raw_data`) or a file (`raw_data_file`, the SHA-256
    of a `media` parent's file). Data arriving later than the acquisition mode allows
    after `finished_at` is flagged `test_data_late`. Changing data is a new record with
    `corrects` and `correction_reason` (R10). A second test record of a sample for the same
    `test_item` either corrects the latest one or says why it is a separate test
    (`retest_reason`, 复检); otherwise 409 `test_record_exists` names the existing record.
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
    retest_reason: LongText | None = Field(
        default=None, description="why this is a separate test of the same item (复检)"
    )
    site: Site | None = Field(default=None, description="on-site tests only: where")

    _u = field_validator("started_at", "finished_at")(_utc)

    @model_validator(mode="after")
    def _shape(self) -> TestRecordIn:
        if (self.raw_data is None) == (self.raw_data_file is None):
            raise ValueError("give exactly one of raw_data and raw_data_file")
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        if (self.corrects is None) != (self.correction_reason is None):
            raise ValueError("corrects and correction_reason go together")
        if self.corrects is not None and self.retest_reason is not None:
            raise ValueError("a record either corrects another or is a retest, not both")
        return self


class TestPlanIn(RecordIn):
    """检测方案 (R11, R26: Jiujiang §三(三), Fujian §三(三)): the plan and schedule of on-site
    testing or a pile test. Parents: exactly one `contract`, optional `media`.

    A plan must reach the platform at least `rules.test_plan_lead_working_days` (3)
    working days before `planned_start` (the holiday calendar applies); a later one is
    flagged `test_plan_late`, a warning on every report resting on it.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_no": "FA-2026-0031",
                    "kind": "pile_test",
                    "items": [{"name": "单桩竖向抗压静载试验", "standard": "JGJ 106-2014"}],
                    "location": "深圳湾科技园3号楼 桩基 P1-P40",
                    "planned_start": "2026-12-08T08:00:00+08:00",
                    "planned_end": "2026-12-10T18:00:00+08:00",
                    "parents": ["<contract id>"],
                }
            ]
        },
    )
    __test__: ClassVar[bool] = False  # not a pytest class

    plan_no: Identifier = Field(description="方案编号")
    kind: Literal["onsite", "pile_test"] = Field(description="现场检测 / 桩基检测")
    items: list[CommissionItem] = Field(min_length=1, max_length=MAX_ITEMS)
    location: ShortText = Field(description="检测地点 / 部位")
    planned_start: AwareDatetime
    planned_end: AwareDatetime
    notes: LongText | None = None

    _u = field_validator("planned_start", "planned_end")(_utc)

    @model_validator(mode="after")
    def _window(self) -> TestPlanIn:
        if self.planned_end < self.planned_start:
            raise ValueError("planned_end is before planned_start")
        return self


class MediaIn(RecordIn):
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
    algorithm: Literal["ed25519", "ecdsa-p256", "sm2"]
    public_key: Annotated[str, StringConstraints(min_length=40, max_length=4096)] = Field(
        description="PEM or base64 DER SubjectPublicKeyInfo"
    )
    distinguishing_id: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
    ] | None = Field(
        default=None,
        description="SM2 keys only: the distinguishing ID the key signs with (default "
        "1234567812345678, GM/T 0009)",
    )


@dataclass(frozen=True)
class StoredFile:
    """A file already in the blob store."""

    sha256: str
    size: int
    media_type: str


def store_file(blobs: BlobStore, chunks: Iterable[bytes], media_type: str) -> StoredFile:
    """Put a record's file part into the blob store; 422 `file_empty` for an empty one."""
    size = 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for data in chunks:
            size += len(data)
            yield data

    sha256 = blobs.put_chunks(counted())
    if size == 0:
        raise Invalid("file_empty", "the file part is empty")
    return StoredFile(sha256, size, media_type)
