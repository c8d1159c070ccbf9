"""One handler per collection of the traceable chain, registered in `HANDLERS`.

`create_record` (service/domain/records/intake.py) resolves the parents, then runs the
collection's handler in four steps:

1. `check`: refusals that need only the request and the database (a taken sample code);
2. `take_file`: the file a contract or media record arrives with, as a multipart part or
   a completed resumable upload (`upload_id`);
3. `derive`: the rules of the record type, and what the server derives: the body, the
   files the record names, the flags it raises on arrival;
4. `after_insert`: facts kept beside the appended record (a sample's code, a test
   record's correction), whose unique keys settle a race between two requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import rfc3339
from service.domain import registry, rules, seals
from service.domain.evidence import FileRef, file_ref
from service.domain.imagefacts import KEY_IMAGE_MAX_SIDE, ImageUnreadable, image_facts, open_image
from service.domain.nonconforming import notify_seal_check_failed
from service.domain.records.corrections import (
    check_correction,
    check_not_replacing,
    record_correction,
    record_first_test,
)
from service.domain.records.inputs import (
    CommissionIn,
    ContractIn,
    MediaIn,
    ProjectIn,
    ReceiptIn,
    RecordIn,
    SampleIn,
    SealIn,
    StoredFile,
    TestPlanIn,
    TestRecordIn,
    WitnessIn,
    parse_rfc3339,
)
from service.domain.records.parents import media_hashes, require_images, sample_code_of
from service.domain.records.queries import record_json
from service.domain.records.witness_keys import (
    check_witness_signature,
    key_json,
    signing_witness_key,
    witness_identity,
)
from service.domain.uploads import take_upload
from service.errors import Conflict, Invalid
from service.settings import Settings
from service.storage import loghash
from service.storage.blobs import BlobStore
from service.storage.models import Record, SampleCode, Upload, WitnessKey
from verifier.merkle import leaf_hash

#: A timestamp further than this in the future is refused (clock skew allowance).
MAX_CLOCK_SKEW_S = 300

M = TypeVar("M", bound=RecordIn)


@dataclass(frozen=True)
class Intake:
    """One record being created: what every step of its handler may read."""

    session: Session
    settings: Settings
    blobs: BlobStore
    institution: str
    #: The platform's receive time, the record's `created_at`.
    now: datetime
    #: The resolved parents, in request order.
    parents: Sequence[Record]


@dataclass
class Derived:
    """What a handler derives for the evidence record."""

    body: dict[str, Any]
    files: list[FileRef] = field(default_factory=list)
    #: None: the record type raises no flags (the body then has no `flags`).
    flags: list[rules.Flag] | None = None
    #: Parents the platform adds after the request's (a seal's witness registry record).
    extra_parents: list[Record] = field(default_factory=list)


class Handler(Generic[M]):
    """The rules of one collection; the defaults store the request as sent."""

    def __init__(self, record_type: str, model: type[M]) -> None:
        self.record_type = record_type
        self.model = model

    def check(self, intake: Intake, payload: M) -> None:
        """Refusals before any file is taken (none by default)."""

    def take_file(
        self, intake: Intake, payload: M, file: StoredFile | None
    ) -> tuple[StoredFile | None, Upload | None]:
        """The record's file and the upload it came from (records without files: none)."""
        return file, None

    def derive(self, intake: Intake, payload: M, file: StoredFile | None) -> Derived:
        return Derived(dump(payload))

    def after_insert(self, intake: Intake, payload: M, record: Record) -> None:
        """Facts kept beside the record, in the same transaction (none by default)."""


class FileHandler(Handler[M]):
    """A record that names one file: a multipart `file` part or `upload_id`, not both."""

    def upload_id(self, payload: M) -> str | None:
        """The completed upload the request names instead of a multipart file part."""
        value = getattr(payload, "upload_id", None)
        return value if isinstance(value, str) else None

    def take_file(
        self, intake: Intake, payload: M, file: StoredFile | None
    ) -> tuple[StoredFile | None, Upload | None]:
        upload: Upload | None = None
        upload_id = self.upload_id(payload)
        if upload_id is not None:
            if file is not None:
                raise Invalid("file_twice", "give a file part or upload_id, not both")
            upload = take_upload(intake.session, intake.blobs, upload_id, intake.institution)
            assert upload.sha256 is not None
            file = StoredFile(upload.sha256, upload.length, upload.media_type)
        if file is None:
            raise Invalid("file_required", f"a {self.record_type} needs a file")
        return file, upload


class ContractHandler(FileHandler[ContractIn]):
    """R11: the signed PDF, not dated in the future; flagged when uploaded late."""

    def derive(self, intake: Intake, payload: ContractIn, file: StoredFile | None) -> Derived:
        assert file is not None
        if not _is_pdf(intake.blobs, file.sha256):
            raise Invalid("file_type_invalid", "the contract file is not a PDF")
        settings = intake.settings
        today = rules.local_date(intake.now, settings.rules.timezone)
        if payload.signed_on > today:
            raise Invalid("date_in_future", "signed_on is in the future")
        flags = rules.contract_flags(
            payload.signed_on,
            intake.now,
            settings.rules,
            rules.WorkingCalendar.from_settings(settings.rules),
        )
        files = [_file_ref(intake, "contract_pdf", file.sha256, file.size, "application/pdf")]
        return Derived(dump(payload), files, flags)


class SampleHandler(Handler[SampleIn]):
    """A sample code is unique per institution (409 `duplicate_sample_code`)."""

    def check(self, intake: Intake, payload: SampleIn) -> None:
        if sample_code_taken(intake.session, intake.institution, payload.sample_code):
            raise _duplicate_sample_code(payload.sample_code)

    def after_insert(self, intake: Intake, payload: SampleIn, record: Record) -> None:
        session = intake.session
        row = SampleCode(
            institution=intake.institution, sample_code=payload.sample_code, record_id=record.id
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError as exc:  # another request registered the code first
            session.rollback()
            raise _duplicate_sample_code(payload.sample_code) from exc


class SealHandler(Handler[SealIn]):
    """R7: the seal of the sample parent, signed by an active witness key of the lab."""

    def derive(self, intake: Intake, payload: SealIn, file: StoredFile | None) -> Derived:
        sample = next(p for p in intake.parents if p.type == "sample")
        if sample_code_of(sample) != payload.sample_code:
            raise Invalid(
                "sample_code_mismatch", "sample_code is not the code of the sample parent"
            )
        require_images(payload.images, intake.parents, "the seal")
        key = signing_witness_key(intake.session, payload.witness_key_id, intake.institution)
        signed = seals.seal_payload(
            payload.sample_code, payload.sealed_at, payload.place, payload.images
        )
        check_witness_signature(key, signed, payload.signature, "seal_signature_invalid")
        _not_in_future(parse_rfc3339(payload.sealed_at), intake.now, "sealed_at")
        return _vouched(
            intake,
            key,
            {
                "sample_code": payload.sample_code,
                "signed": signed,
                "signature": payload.signature,
                "witness_key": key_json(key),
                "witness": witness_identity(key),
            },
        )


class WitnessHandler(Handler[WitnessIn]):
    """R8: a witness record of the sample parents, signed by an active witness key."""

    def derive(self, intake: Intake, payload: WitnessIn, file: StoredFile | None) -> Derived:
        codes = sorted(sample_code_of(p) for p in intake.parents if p.type == "sample")
        if sorted(payload.sample_codes) != codes:
            raise Invalid(
                "sample_code_mismatch", "sample_codes are not the codes of the sample parents"
            )
        require_images(payload.images, intake.parents, "the witness record")
        key = signing_witness_key(intake.session, payload.witness_key_id, intake.institution)
        signed = seals.witness_payload(
            payload.sample_codes,
            payload.witnessed_at,
            payload.location,
            list(payload.activities),
            payload.images,
        )
        check_witness_signature(key, signed, payload.signature, "witness_signature_invalid")
        _not_in_future(parse_rfc3339(payload.witnessed_at), intake.now, "witnessed_at")
        return _vouched(
            intake,
            key,
            {
                "witness": witness_identity(key),
                "signed": signed,
                "signature": payload.signature,
                "witness_key": key_json(key),
            },
        )


def _vouched(intake: Intake, key: WitnessKey, body: dict[str, Any]) -> Derived:
    """A seal or witness record: it names the agency's registry record of its key among its
    parents (so a bundle carries the key's certificate), or carries `witness_unverified`."""
    parent = registry.verification_parent(intake.session, key)
    if parent is None:
        return Derived(body, flags=registry.unverified_flags(key) or None)
    body["witness_verified_by"] = registry.verified_by(parent)
    return Derived(body, extra_parents=[parent])


class ProjectHandler(Handler[ProjectIn]):
    """A project may name the supervision agency's registration of it (`registered_project`),
    which becomes a parent; without one the project is the lab's word alone."""

    def derive(self, intake: Intake, payload: ProjectIn, file: StoredFile | None) -> Derived:
        if payload.registered_project is None:
            return Derived(dump(payload))
        entry = registry.registered_project(
            intake.session, payload.registered_project, intake.institution
        )
        return Derived(dump(payload), extra_parents=[entry])


class ReceiptHandler(Handler[ReceiptIn]):
    """R7: the server re-checks the seal parent and records the result, pass or fail."""

    def derive(self, intake: Intake, payload: ReceiptIn, file: StoredFile | None) -> Derived:
        seal = next(p for p in intake.parents if p.type == "seal")
        _not_in_future(payload.received_at, intake.now, "received_at")
        seal_obj = record_json(seal)
        check = seals.check_stored_seal(
            seal_obj,
            canonical_matches_leaf=leaf_hash(seal.canonical, loghash.of(intake.session)).hex()
            == seal.leaf_hash,
            observed_sample_code=payload.observed_sample_code,
            seal_intact=payload.seal_intact,
        )
        return Derived(
            {
                **dump(payload),
                "sample_code": seal_obj.get("body", {}).get("sample_code"),
                "seal_record_id": seal.id,
                "seal_check": check.as_json(),
            }
        )

    def after_insert(self, intake: Intake, payload: ReceiptIn, record: Record) -> None:
        check = record_json(record)["body"]["seal_check"]
        if check.get("result") == "fail":  # the agency hears of it (R7, R12)
            notify_seal_check_failed(intake.session, record, intake.institution, check)


class TestRecordHandler(Handler[TestRecordIn]):
    """R10, R13, R23, R26: raw data inline or as a media parent's file; a correction names
    the latest version of a test record of the same sample; a second record of a sample
    for the same item corrects or is a retest; on-site tests rest on a plan (or are
    flagged) and carry key images; flagged when data arrive late."""

    __test__ = False  # not a pytest class

    def check(self, intake: Intake, payload: TestRecordIn) -> None:
        samples = [p for p in intake.parents if p.type == "sample"]
        if payload.site is None:
            if not samples:
                raise Invalid("parent_required", "a test_record needs 1 sample parent(s)")
            stray = next((p for p in intake.parents if p.type in ("test_plan", "project")), None)
            if stray is not None:
                raise Invalid(
                    "parent_type_invalid",
                    f"a laboratory test_record cannot derive from a {stray.type} ({stray.id}); "
                    "an on-site test (with `site`) can",
                    parent=stray.id,
                )
        else:
            if samples:
                raise Invalid(
                    "parent_type_invalid",
                    "an on-site test record (with `site`) tests no sample: name its test_plan",
                    parent=samples[0].id,
                )
            has_plan = any(p.type == "test_plan" for p in intake.parents)
            has_project = any(p.type == "project" for p in intake.parents)
            if has_plan == has_project:
                raise Invalid(
                    "parent_required",
                    "an on-site test record names its test_plan, or without a plan the project",
                )
            if not _has_image(intake.parents):
                raise Invalid(
                    "image_required",
                    "an on-site test record needs at least one key image (a media parent of "
                    "kind image)",
                )

    def derive(self, intake: Intake, payload: TestRecordIn, file: StoredFile | None) -> Derived:
        parents = intake.parents
        _not_in_future(payload.finished_at, intake.now, "finished_at")
        if payload.raw_data_file is not None and payload.raw_data_file not in media_hashes(
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
            check_correction(intake.session, corrected[0], parents)
        samples = [p for p in parents if p.type == "sample"]
        if payload.corrects is None and payload.retest_reason is None and samples:
            check_not_replacing(intake.session, samples, payload.test_item)
        flags = rules.test_data_flags(
            payload.acquisition, payload.finished_at, intake.now, intake.settings.rules
        )
        if payload.site is not None and not any(p.type == "test_plan" for p in parents):
            flags.append(
                rules.Flag(
                    rules.RULE_ONSITE_WITHOUT_PLAN,
                    {"site": payload.site.description, "started_at": rfc3339(payload.started_at)},
                )
            )
        tested_on = rules.local_date(payload.started_at, intake.settings.rules.timezone)
        device_flags, device_entry = registry.device_check(
            intake.session, intake.institution, payload.device.id, tested_on
        )
        flags += device_flags
        tester_flags, tester_entry = registry.tester_check(
            intake.session, intake.institution, payload.tester
        )
        flags += tester_flags
        body = dump(payload, "raw_data")
        if payload.raw_data is not None:
            body["raw_data"] = payload.raw_data
        extra = [e for e in (device_entry, tester_entry) if e is not None]
        return Derived(body, flags=flags, extra_parents=extra)

    def after_insert(self, intake: Intake, payload: TestRecordIn, record: Record) -> None:
        if payload.corrects is not None:
            record_correction(intake.session, payload.corrects, record.id)
        elif payload.retest_reason is None:
            samples = [p for p in intake.parents if p.type == "sample"]
            if samples:
                record_first_test(intake.session, samples, payload.test_item, record.id)


class TestPlanHandler(Handler[TestPlanIn]):
    """R11, R26: the plan of on-site testing, flagged when it arrives with less notice
    than `rules.test_plan_lead_working_days` working days before the planned start."""

    __test__ = False  # not a pytest class

    def derive(self, intake: Intake, payload: TestPlanIn, file: StoredFile | None) -> Derived:
        settings = intake.settings.rules
        flags = rules.notice_flags(
            rules.RULE_TEST_PLAN_LATE,
            payload.planned_start,
            intake.now,
            settings.test_plan_lead_working_days,
            settings,
            rules.WorkingCalendar.from_settings(settings),
        )
        return Derived(dump(payload), flags=flags)


def check_key_image(path: Path, max_pixels: int) -> None:
    """A media record of kind `image` is a key image the public page shows: its file must
    decode (JPEG, PNG, WebP, TIFF, BMP or GIF within `max_pixels`), else 422
    `image_unreadable`; bytes that merely claim to be an image are refused at upload."""
    try:
        open_image(path.read_bytes(), max_pixels, KEY_IMAGE_MAX_SIDE)
    except ImageUnreadable as exc:
        raise Invalid(
            "image_unreadable",
            f"a media record of kind image needs a readable image file ({exc}); "
            "upload other files with kind document or data",
        ) from None


class MediaHandler(FileHandler[MediaIn]):
    """R9: key images are flagged (never refused) when edited, mistimed or late; their
    file must be a readable image (`check_key_image`)."""

    def derive(self, intake: Intake, payload: MediaIn, file: StoredFile | None) -> Derived:
        assert file is not None
        files = [_file_ref(intake, "media", file.sha256, file.size, file.media_type)]
        flags: list[rules.Flag] | None = None
        if payload.kind == "image":
            settings = intake.settings
            check_key_image(intake.blobs.path(file.sha256), settings.public.max_image_pixels)
            facts = image_facts(
                intake.blobs.path(file.sha256), file.media_type, settings.rules.timezone
            )
            flags = rules.media_flags(facts, payload.captured_at, intake.now, settings.rules)
        return Derived(dump(payload), files, flags)


#: Collection (the URL's last segment) -> its handler, record type and request model.
HANDLERS: dict[str, Handler[Any]] = {
    "projects": ProjectHandler("project", ProjectIn),
    "contracts": ContractHandler("contract", ContractIn),
    "commissions": Handler("commission", CommissionIn),
    "samples": SampleHandler("sample", SampleIn),
    "seals": SealHandler("seal", SealIn),
    "witnesses": WitnessHandler("witness", WitnessIn),
    "receipts": ReceiptHandler("receipt", ReceiptIn),
    "test-records": TestRecordHandler("test_record", TestRecordIn),
    "test-plans": TestPlanHandler("test_plan", TestPlanIn),
    "media": MediaHandler("media", MediaIn),
}

#: Collection -> (record type, request model), for the routes.
COLLECTIONS: dict[str, tuple[str, type[RecordIn]]] = {
    collection: (handler.record_type, handler.model) for collection, handler in HANDLERS.items()
}


def sample_code_taken(session: Session, institution: str, code: str) -> bool:
    return (
        session.scalar(
            select(SampleCode.record_id).where(
                SampleCode.institution == institution, SampleCode.sample_code == code
            )
        )
        is not None
    )


def dump(model: BaseModel, *exclude: str) -> dict[str, Any]:
    """The request as the record's body: as sent, without parents and upload id."""
    body: dict[str, Any] = model.model_dump(
        mode="json", exclude={"parents", "upload_id", *exclude}, exclude_none=True
    )
    return body


def _duplicate_sample_code(code: str) -> Conflict:
    return Conflict("duplicate_sample_code", f"sample code {code} is already registered")


def _not_in_future(ts: datetime, now: datetime, name: str) -> None:
    if ts > now + timedelta(seconds=MAX_CLOCK_SKEW_S):
        raise Invalid("timestamp_in_future", f"{name} is in the future")


def _has_image(parents: Sequence[Record]) -> bool:
    return any(p.type == "media" and record_json(p)["body"].get("kind") == "image" for p in parents)


def _file_ref(intake: Intake, role: str, sha256: str, size: int, media_type: str) -> FileRef:
    """A file entry of the record; in an SM3 log it names the file's SM3 too (§7.7)."""
    return file_ref(role, sha256, size, media_type, loghash.of(intake.session), intake.blobs)


def _is_pdf(blobs: BlobStore, sha256: str) -> bool:
    with blobs.path(sha256).open("rb") as fh:
        head = fh.read(1024)
    return b"%PDF-" in head
