"""The supervision agency's register of witnesses and samplers (issue 13, R24).

A supervision agency (监督机构, an `agency` account limited to a region) vouches for the
people who sign seals (电子封志) and witness records: it registers a person with their
public key for a lab of its region, or verifies a key the lab proposed
(`POST /api/v1/witness-keys`). Either way:

- the platform CA issues the key an X.509 certificate (EKU `WITNESS_SIGNING_EKU`), so a
  signature by the key verifies offline to the platform roots;
- a `registry` evidence record (INTERFACE §7.4, `body.kind` = `witness`) states who vouched
  for whom, names the certificate as its file (role `witness_certificate`) and is anchored
  like every record;
- every seal or witness record the key signs afterwards names that registry record among
  its parents, so a report's bundle carries the certificate. A key no agency verified still
  signs, and its records carry the flag `witness_unverified` (§7.2).

A replacement (`replaces`, `effective_on`) registered fewer working days before the change
than `rules.witness_replacement_notice_working_days` (default 3) carries the flag
`witness_replacement_late` (Jiujiang §四(三)).

An agency writes only for labs of its region: 403 `out_of_region` otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session
from stdnum.cn import ric

from service.clock import rfc3339, utc_now
from service.domain import rules
from service.domain.accounts import ROLE_AGENCY, AuditScope
from service.domain.evidence import FileRef, append_record, new_record_id
from service.domain.masking import mask_id_number, mask_name
from service.domain.nonconforming import notify_flags
from service.domain.records.flags import store_flags
from service.domain.records.inputs import ProjectIn, WitnessKeyIn
from service.domain.records.witness_keys import key_json, register_witness_key, witness_key_json
from service.errors import Conflict, Forbidden, Invalid, NotFound
from service.settings import Settings
from service.storage.blobs import BlobStore
from service.storage.models import (
    Auditor,
    Institution,
    Record,
    RegistryDevice,
    RegistryQualification,
    RegistryStaff,
    WitnessKey,
)
from signer.ca import DevCA

KIND_WITNESS = "witness"
KIND_PROJECT = "project"
KIND_DEVICE = "device"
KIND_STAFF = "staff"
KIND_QUALIFICATION = "qualification"
RULE_TESTER_UNREGISTERED = "tester_unregistered"
RULE_DEVICE_UNREGISTERED = "device_unregistered"
RULE_CALIBRATION_EXPIRED = "calibration_expired"
RULE_REPLACEMENT_LATE = "witness_replacement_late"
RULE_WITNESS_UNVERIFIED = "witness_unverified"
#: The registry's flags the project's supervision agency is notified of, when the record
#: carrying them arrives (event `registry_warning`).
NOTIFIED_RULES = frozenset({
    RULE_WITNESS_UNVERIFIED, RULE_DEVICE_UNREGISTERED, RULE_CALIBRATION_EXPIRED,
    RULE_TESTER_UNREGISTERED, RULE_REPLACEMENT_LATE,
})
CERTIFICATE_ROLE = "witness_certificate"
CERTIFICATE_MEDIA_TYPE = "application/pkix-cert"
#: At most this many projects per person in one registry entry.
MAX_PROJECTS = 50

ProjectRef = Annotated[str, StringConstraints(min_length=1, max_length=100)]
PersonRole = Literal["witness", "sampler"]


class Appointment(BaseModel):
    """What a registration or verification states beyond the key: the role, the projects
    served, and whom the person replaces."""

    model_config = ConfigDict(extra="forbid")

    role: PersonRole = Field(default="witness", description="witness 见证人员 / sampler 取样人员")
    projects: list[ProjectRef] = Field(
        default_factory=list,
        max_length=MAX_PROJECTS,
        description="the projects the person serves (project record ids or project names)",
    )
    replaces: Annotated[str, StringConstraints(min_length=1, max_length=26)] | None = Field(
        default=None, description="witness key id of the person this one replaces"
    )
    effective_on: date | None = Field(
        default=None, description="the day the replacement takes over (required with replaces)"
    )


class WitnessRegistrationIn(Appointment):
    """A person and their key, registered by the agency for a lab of its region."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "institution": "91440300MA0000001L",
                    "person": {
                        "name": "张三",
                        "id_number": "11010519491231002X",
                        "unit": "鹏城监理有限公司",
                    },
                    "role": "witness",
                    "projects": ["深圳湾科技园3号楼"],
                    "algorithm": "ed25519",
                    "public_key": "MCowBQYDK2VwAyEA...",
                }
            ]
        },
    )

    institution: Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]
    person: WitnessKeyIn.Witness = Field(
        description="name, 居民身份证号 (GB 11643 check digit checked; masked in the record), unit"
    )
    algorithm: Literal["ed25519", "ecdsa-p256"]
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class WitnessVerificationIn(Appointment):
    """The agency's approval of a key the lab proposed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "witness", "projects": ["深圳湾科技园3号楼"]}]},
    )


@dataclass(frozen=True)
class Vouched:
    """A key an agency vouched for, and the registry record that says so."""

    key: WitnessKey
    record: Record

    def as_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record.id,
            "leaf_hash": self.record.leaf_hash,
            "witness_key": witness_key_json(self.key),
        }


def agency_account(session: Session, auditor_id: str | None) -> Auditor:
    """The caller's agency account (403 unless it is one)."""
    account = session.get(Auditor, auditor_id) if auditor_id else None
    if account is None or account.kind != ROLE_AGENCY or not account.region_scope:
        raise Forbidden("forbidden", "this endpoint is for supervision-agency keys")
    return account


def check_agency_region(session: Session, agency: Auditor, institution: str) -> Institution:
    """The lab, if it is registered in the agency's region: 404 `unknown_institution`,
    403 `out_of_region` otherwise."""
    inst = session.get(Institution, institution)
    if inst is None:
        raise NotFound("unknown_institution", f"no institution {institution}")
    if not AuditScope(agency.region_scope).covers(inst.region):
        raise Forbidden(
            "out_of_region",
            f"institution {institution} is registered in region {inst.region}; this agency "
            f"writes only in region {agency.region_scope}",
        )
    return inst


@dataclass(frozen=True)
class AgencyWrite:
    """What an agency's write works with: the transaction, settings, blob store, the
    platform CA and the agency account."""

    session: Session
    settings: Settings
    blobs: BlobStore
    ca: DevCA
    agency: Auditor
    #: Set when the write approves a lab's proposal (docs/registry.md, "Proposals"): the
    #: record then says `action: "approve"` and names the proposal.
    proposal: dict[str, Any] | None = None


def register_witness(w: AgencyWrite, data: WitnessRegistrationIn) -> Vouched:
    """The agency registers a person and their key for a lab of its region (caller commits)."""
    session, agency = w.session, w.agency
    check_agency_region(session, agency, data.institution)
    if not ric.is_valid(data.person.id_number):
        raise Invalid("id_number_invalid", "person.id_number is not a valid resident ID number")
    key = register_witness_key(
        session,
        data.institution,
        WitnessKeyIn(
            witness=data.person,
            algorithm=data.algorithm,
            public_key=data.public_key,
        ),
    )
    return _vouch(w, key, data, action="register")


def verify_witness_key(w: AgencyWrite, key_id: str, data: WitnessVerificationIn) -> Vouched:
    """The agency approves a key a lab of its region proposed (caller commits); 409
    `witness_key_verified` if an agency already did, 422 `witness_key_revoked`."""
    session = w.session
    key = session.get(WitnessKey, key_id) if len(key_id) <= 26 else None
    if key is None:
        raise NotFound("witness_key_not_found", f"no witness key {key_id}")
    check_agency_region(session, w.agency, key.institution)
    if key.revoked_at is not None:
        raise Invalid("witness_key_revoked", f"witness key {key_id} is revoked")
    if key.verified_at is not None:
        raise Conflict(
            "witness_key_verified",
            f"witness key {key_id} was verified already (registry record "
            f"{key.registry_record_id})",
            record_id=key.registry_record_id,
        )
    return _vouch(w, key, data, action="verify")


def _vouch(w: AgencyWrite, key: WitnessKey, data: Appointment, *, action: str) -> Vouched:
    session, settings, blobs, ca, agency = w.session, w.settings, w.blobs, w.ca, w.agency
    now = utc_now()
    if key.algorithm == "sm2":
        # The platform CA issues X.509 witness certificates with `cryptography`, which has
        # no SM2 keys; an SM2 witness key stays lab-registered (warning witness_unverified).
        raise Invalid(
            "witness_key_invalid",
            "SM2 witness keys cannot be agency-verified yet: the platform CA certifies "
            "Ed25519 and ECDSA P-256 witness keys only",
        )
    flags = _replacement_flags(session, settings, key, data, now)
    public = serialization.load_der_public_key(key.public_key)
    if not isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise Invalid("witness_key_invalid", "unsupported witness key type")  # pragma: no cover
    cert = ca.issue_witness_certificate(
        public, name=mask_name(key.witness_name), role=data.role, serial_label=key.key_id
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    sha = blobs.put(der)
    body: dict[str, Any] = {
        "kind": KIND_WITNESS,
        "action": action,
        "agency": _agency_json(agency),
        "person": {
            "name": key.witness_name,
            "id_number": mask_id_number(key.witness_id_number),
            "unit": key.witness_unit,
            "role": data.role,
        },
        "projects": list(data.projects),
        "witness_key": key_json(key),
        "certificate": certificate_facts(cert, sha),
    }
    if data.replaces is not None:
        body["replaces"] = data.replaces
    if data.effective_on is not None:
        body["effective_on"] = data.effective_on.isoformat()
    if flags:
        body["flags"] = rules.flags_json(flags)
    record = append_record(
        session,
        type="registry",
        institution=key.institution,
        body=body,
        files=[FileRef(CERTIFICATE_ROLE, sha, len(der), CERTIFICATE_MEDIA_TYPE)],
        record_id=new_record_id(),
        created_at=now,
    )
    store_flags(session, record, key.institution, flags, now)
    notify_warnings(session, record, key.institution, flags)
    key.role = data.role
    key.verified_by = agency.id
    key.verified_at = now
    key.registry_record_id = record.id
    key.certificate = der
    session.flush()
    return Vouched(key, record)


def notify_warnings(
    session: Session, record: Record, institution: str, flags: Sequence[rules.Flag]
) -> None:
    """The agency hears of the registry's warnings a record just appended carries (one
    `registry_warning` notification for the record; none without such a flag)."""
    mine = [f for f in flags if f.rule in NOTIFIED_RULES]
    if mine:
        notify_flags(session, record, institution, mine)


def _replacement_flags(
    session: Session, settings: Settings, key: WitnessKey, data: Appointment, now: datetime
) -> list[rules.Flag]:
    """R24: a replacement is registered N working days before it takes over."""
    if data.replaces is None and data.effective_on is None:
        return []
    if data.replaces is None or data.effective_on is None:
        raise Invalid(
            "replacement_incomplete", "a replacement gives both replaces and effective_on"
        )
    replaced = session.get(WitnessKey, data.replaces) if len(data.replaces) <= 26 else None
    if replaced is None or replaced.institution != key.institution:
        raise NotFound(
            "witness_key_not_found", f"no witness key {data.replaces} of this institution"
        )
    tz = settings.rules.timezone
    starts = datetime.combine(data.effective_on, datetime.min.time(), ZoneInfo(tz))
    flags = rules.notice_flags(
        RULE_REPLACEMENT_LATE,
        starts,
        now,
        settings.rules.witness_replacement_notice_working_days,
        settings.rules,
        rules.WorkingCalendar.from_settings(settings.rules),
    )
    return [rules.Flag(f.rule, {**f.detail, "replaces": data.replaces}) for f in flags]


def certificate_facts(cert: x509.Certificate, sha256: str) -> dict[str, Any]:
    return {
        "sha256": sha256,
        "serial": format(cert.serial_number, "x"),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": rfc3339(cert.not_valid_before_utc),
        "not_after": rfc3339(cert.not_valid_after_utc),
    }


class ProjectRegistrationIn(BaseModel):
    """A project (工程项目) and its responsible units, entered by the agency for a lab of its
    region; the lab's project record then names it (`registered_project`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "institution": "91440300MA0001301W",
                    "project": {
                        "name": "深圳湾科技园3号楼",
                        "project_no": "440305202611220101",
                        "location": "深圳市南山区科苑南路",
                        "region": "440305",
                        "construction_unit": {"name": "深圳湾建设有限公司"},
                        "supervision_unit": {"name": "鹏城监理有限公司"},
                        "contractor": {"name": "中建某局"},
                    },
                }
            ]
        },
    )

    institution: Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]
    project: ProjectIn = Field(description="the project as a lab would send it, without parents")


def register_project(w: AgencyWrite, data: ProjectRegistrationIn) -> Record:
    """The agency enters a project for a lab of its region (caller commits)."""
    check_agency_region(w.session, w.agency, data.institution)
    if data.project.parents or data.project.registered_project:
        raise Invalid("project_fields_invalid", "an agency's project names no parents")
    project = data.project.model_dump(
        mode="json", exclude={"parents", "registered_project"}, exclude_none=True
    )
    return _entry(w, data.institution, KIND_PROJECT, project=project)


def registered_project(session: Session, record_id: str, institution: str) -> Record:
    """The agency's registration a lab's project names: 404 `registered_project_not_found`
    unless it is a `registry` record of kind `project` for this lab."""
    row = session.get(Record, record_id) if len(record_id) <= 26 else None
    kind = json.loads(row.canonical).get("body", {}).get("kind") if row is not None else None
    if row is None or row.type != "registry" or kind != KIND_PROJECT:
        raise NotFound(
            "registered_project_not_found", f"no project the agency registered as {record_id}"
        )
    if row.institution != institution:
        raise Forbidden("forbidden", f"project {record_id} was registered for another lab")
    return row


def _entry(w: AgencyWrite, institution: str, kind: str, **fields: Any) -> Record:
    """Append the agency's `registry` record of `kind` about a lab (caller commits)."""
    body = {"kind": kind, "action": "register", "agency": _agency_json(w.agency), **fields}
    if w.proposal is not None:
        body.update(action="approve", proposal=w.proposal)
    return append_record(w.session, type="registry", institution=institution, body=body)


def _agency_json(agency: Auditor) -> dict[str, Any]:
    return {"account": agency.id, "name": agency.name, "region": agency.region_scope}


DEVICE_EXAMPLE: dict[str, Any] = {
    "device": {"id": "YJ-2000-07", "name": "压力试验机", "model": "YAW-2000"},
    "calibration": {
        "kind": "verification",
        "certificate_no": "JD2026-0815",
        "valid_from": "2026-08-15",
        "valid_until": "2027-08-14",
    },
}


class DeviceEntry(BaseModel):
    """A lab's device (检测设备) and its calibration or verification (检定/校准)."""

    model_config = ConfigDict(extra="forbid")

    class Device(BaseModel):
        model_config = ConfigDict(extra="forbid")

        id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")]
        name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
        model: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

    class Calibration(BaseModel):
        model_config = ConfigDict(extra="forbid")

        kind: Literal["verification", "calibration"] = Field(description="检定 / 校准")
        certificate_no: Annotated[str, StringConstraints(min_length=1, max_length=100)]
        valid_from: date | None = None
        valid_until: date = Field(description="the last day the certificate is valid")

    device: Device
    calibration: Calibration


class DeviceRegistrationIn(DeviceEntry):
    """A device entered by the agency for a lab of its region; registering the same device
    again (a new certificate) replaces the entry."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"institution": "91440300MA0001301W", **DEVICE_EXAMPLE}]
        },
    )

    institution: Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]


def check_device(data: DeviceEntry) -> DeviceEntry.Calibration:
    """The entry's calibration, if its dates are in order (422 `calibration_dates_invalid`)."""
    cal = data.calibration
    if cal.valid_from is not None and cal.valid_from > cal.valid_until:
        raise Invalid("calibration_dates_invalid", "valid_from is after valid_until")
    return cal


def register_device(w: AgencyWrite, data: DeviceRegistrationIn) -> Record:
    """The agency registers (or re-registers) a device of a lab of its region."""
    check_agency_region(w.session, w.agency, data.institution)
    cal = check_device(data)
    record = _entry(
        w,
        data.institution,
        KIND_DEVICE,
        device=data.device.model_dump(mode="json", exclude_none=True),
        calibration=cal.model_dump(mode="json", exclude_none=True),
    )
    row = w.session.get(RegistryDevice, (data.institution, data.device.id))
    if row is None:
        row = RegistryDevice(institution=data.institution, device_id=data.device.id)
        w.session.add(row)
    row.name, row.record_id, row.valid_until = data.device.name, record.id, cal.valid_until
    w.session.flush()
    return record


def device_check(
    session: Session, institution: str, device_id: str, tested_on: date
) -> tuple[list[rules.Flag], Record | None]:
    """§7.2 for a test record's device: `device_unregistered` when the agency registered no
    such device for the lab, `calibration_expired` when its calibration ended before the
    test day; else no flag and the device's registry record (the test record's parent)."""
    row = session.get(RegistryDevice, (institution, device_id))
    if row is None:
        return [rules.Flag(RULE_DEVICE_UNREGISTERED, {"device_id": device_id})], None
    entry = session.get(Record, row.record_id)
    if row.valid_until < tested_on:
        detail = {"device_id": device_id, "valid_until": row.valid_until.isoformat(),
                  "tested_on": tested_on.isoformat()}
        return [rules.Flag(RULE_CALIBRATION_EXPIRED, detail)], entry
    return [], entry


STAFF_EXAMPLE: dict[str, Any] = {
    "person": {"name": "王五", "id_number": "11010519491231002X"},
    "roles": ["tester", "approver"],
    "signing_scope": ["混凝土抗压强度", "混凝土劈裂抗拉强度"],
}


class StaffEntry(BaseModel):
    """A lab's tester (检测人员) or report approver (授权签字人) with their signing scope."""

    model_config = ConfigDict(extra="forbid")

    person: WitnessKeyIn.Witness
    roles: list[Literal["tester", "approver"]] = Field(min_length=1, max_length=2)
    signing_scope: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = (
        Field(default_factory=list, max_length=200,
              description="the test items (检测项目/参数) an approver may sign reports for")
    )


class StaffRegistrationIn(StaffEntry):
    """A tester or approver entered by the agency for a lab of its region."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"institution": "91440300MA0001301W", **STAFF_EXAMPLE}]
        },
    )

    institution: Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]


def check_staff(data: StaffEntry) -> tuple[list[str], list[str]]:
    """The entry's roles and signing scope (sorted, once each), if its ID number passes its
    check (422 `id_number_invalid`) and only an approver has a scope (422
    `signing_scope_invalid`)."""
    if not ric.is_valid(data.person.id_number):
        raise Invalid("id_number_invalid", "person.id_number is not a valid resident ID number")
    roles: list[str] = sorted(set(data.roles))
    scope = sorted(set(data.signing_scope))
    if scope and "approver" not in roles:
        raise Invalid("signing_scope_invalid", "only an approver has a signing scope")
    return roles, scope


def register_staff(w: AgencyWrite, data: StaffRegistrationIn) -> Record:
    """The agency registers (or re-registers) a tester or approver of a lab of its region."""
    check_agency_region(w.session, w.agency, data.institution)
    roles, scope = check_staff(data)
    person = {
        "name": data.person.name,
        "id_number": mask_id_number(data.person.id_number.upper()),
        **({"unit": data.person.unit} if data.person.unit else {}),
    }
    record = _entry(
        w, data.institution, KIND_STAFF, person=person, roles=roles, signing_scope=scope
    )
    row = w.session.get(RegistryStaff, (data.institution, data.person.name))
    if row is None:
        row = RegistryStaff(institution=data.institution, name=data.person.name)
        w.session.add(row)
    row.record_id, row.roles = record.id, ",".join(roles)
    row.signing_scope = json.dumps(scope, ensure_ascii=False)
    w.session.flush()
    return record


def tester_check(
    session: Session, institution: str, tester: str | None
) -> tuple[list[rules.Flag], Record | None]:
    """§7.2 `tester_unregistered` unless the agency registered the test record's tester as a
    tester of the lab; else no flag and the tester's registry record (a parent)."""
    row = session.get(RegistryStaff, (institution, tester)) if tester else None
    if row is None or "tester" not in row.roles.split(","):
        return [rules.Flag(RULE_TESTER_UNREGISTERED, {"tester": tester})], None
    return [], session.get(Record, row.record_id)


def check_approver(
    session: Session, institution: str, approver: str, test_items: list[str]
) -> Record | None:
    """Std 4.1.1 item 7: once the agency registered any approver of the lab, a report's
    approver must be one (422 `approver_unregistered`) whose signing scope holds every test
    item the report cites (422 `approver_out_of_scope`). Returns the approver's entry."""
    approvers = session.scalars(
        select(RegistryStaff).where(
            RegistryStaff.institution == institution, RegistryStaff.roles.contains("approver")
        )
    ).all()
    if not approvers:
        return None  # the lab's approvers are not registered yet: nothing to hold it to
    row = next((r for r in approvers if r.name == approver), None)
    if row is None:
        raise Invalid(
            "approver_unregistered",
            f"{approver} is not an approver the supervision agency registered for this lab",
        )
    scope = set(json.loads(row.signing_scope))
    outside = sorted(set(test_items) - scope)
    if outside:
        raise Invalid(
            "approver_out_of_scope",
            f"{approver} may not sign for: {', '.join(outside)}",
            outside=outside,
        )
    return session.get(Record, row.record_id)


ItemName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


QUALIFICATION_EXAMPLE: dict[str, Any] = {
    "certificate": {
        "no": "粤建检字第0001号",
        "issued_by": "广东省住房和城乡建设厅",
        "valid_from": "2024-01-01",
        "valid_until": "2028-12-31",
    },
    "scope": [
        {"specialty": "建筑材料及构配件", "items": ["混凝土抗压强度", "混凝土劈裂抗拉强度"]}
    ],
}


class QualificationEntry(BaseModel):
    """A lab's qualification (资质, std 4.1.1): the certificate (资质证书) and its scope, the
    specialties (检测专项) and test items or parameters (检测项目/参数) of the capability
    annex (能力附表)."""

    model_config = ConfigDict(extra="forbid")

    class Certificate(BaseModel):
        model_config = ConfigDict(extra="forbid")

        no: Annotated[str, StringConstraints(min_length=1, max_length=100)]
        issued_by: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
        valid_from: date | None = None
        valid_until: date = Field(description="the last day the certificate is valid")

    class Specialty(BaseModel):
        model_config = ConfigDict(extra="forbid")

        specialty: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
            description="检测专项"
        )
        items: list[ItemName] = Field(
            min_length=1, max_length=500, description="检测项目/参数 as reports name them"
        )

    certificate: Certificate
    scope: list[Specialty] = Field(min_length=1, max_length=100)


class QualificationRegistrationIn(QualificationEntry):
    """A qualification entered by the agency for a lab of its region. Registering the same
    certificate number again replaces the entry."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"institution": "91440300MA0001301W", **QUALIFICATION_EXAMPLE}]
        },
    )

    institution: Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]


def check_qualification_entry(data: QualificationEntry) -> QualificationEntry.Certificate:
    """The entry's certificate, if its dates are in order (422
    `qualification_dates_invalid`)."""
    cert = data.certificate
    if cert.valid_from is not None and cert.valid_from > cert.valid_until:
        raise Invalid("qualification_dates_invalid", "valid_from is after valid_until")
    return cert


def register_qualification(w: AgencyWrite, data: QualificationRegistrationIn) -> Record:
    """The agency registers (or re-registers) a qualification of a lab of its region."""
    check_agency_region(w.session, w.agency, data.institution)
    cert = check_qualification_entry(data)
    scope = [
        {"specialty": s.specialty, "items": sorted(set(s.items))} for s in data.scope
    ]
    record = _entry(
        w,
        data.institution,
        KIND_QUALIFICATION,
        certificate=cert.model_dump(mode="json", exclude_none=True),
        scope=scope,
    )
    row = w.session.get(RegistryQualification, (data.institution, cert.no))
    if row is None:
        row = RegistryQualification(institution=data.institution, certificate_no=cert.no)
        w.session.add(row)
    row.record_id, row.valid_from, row.valid_until = record.id, cert.valid_from, cert.valid_until
    row.scope = json.dumps(scope, ensure_ascii=False)
    w.session.flush()
    return record


def check_qualification(
    session: Session, institution: str, test_items: list[str], on: date
) -> None:
    """Std 4.1.1 (超资质): once the agency registered any qualification of the lab, every
    test item a report cites must be in the scope of a certificate valid on `on`: 422
    `out_of_scope` for an item no certificate covers, `qualification_expired` for one only
    certificates not valid that day cover. Labs with no qualification registered pass."""
    rows = session.scalars(
        select(RegistryQualification).where(RegistryQualification.institution == institution)
    ).all()
    if not rows:
        return
    valid: set[str] = set()
    lapsed: dict[str, RegistryQualification] = {}
    for row in rows:
        items = {i for s in json.loads(row.scope) for i in s["items"]}
        if (row.valid_from is None or row.valid_from <= on) and on <= row.valid_until:
            valid |= items
        else:
            lapsed.update({i: row for i in items})
    wanted = sorted(set(test_items) - valid)
    outside = [i for i in wanted if i not in lapsed]
    if outside:
        raise Invalid(
            "out_of_scope",
            f"outside the lab's qualification scope (超资质): {', '.join(outside)}",
            outside=outside,
        )
    if wanted:
        row = lapsed[wanted[0]]
        raise Invalid(
            "qualification_expired",
            f"the qualification certificate {row.certificate_no} covering "
            f"{', '.join(wanted)} is not valid on {on.isoformat()} "
            f"(valid until {row.valid_until.isoformat()})",
            outside=wanted,
            certificate_no=row.certificate_no,
            valid_until=row.valid_until.isoformat(),
        )


def verification_parent(session: Session, key: WitnessKey) -> Record | None:
    """The registry record a seal or witness record signed by `key` names as a parent."""
    if key.registry_record_id is None:
        return None
    return session.get(Record, key.registry_record_id)


def verified_by(entry: Record) -> dict[str, Any]:
    """What a seal or witness record says of its key's verification: the registry record
    and the agency that wrote it."""
    agency = json.loads(entry.canonical).get("body", {}).get("agency", {})
    return {"registry_record_id": entry.id, "agency": agency.get("name")}


def unverified_flags(key: WitnessKey) -> list[rules.Flag]:
    """§7.2 `witness_unverified` when no agency verified the key."""
    if key.verified_at is not None:
        return []
    return [rules.Flag(RULE_WITNESS_UNVERIFIED, {"witness_key_id": key.key_id})]


def list_entries(
    session: Session,
    *,
    institutions: list[str] | None,
    institution: str | None = None,
    after: str = "",
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Registry records, oldest first (by id), of the given institutions (None: all)."""
    query = select(Record).where(Record.type == "registry", Record.id > after)
    if institutions is not None:
        query = query.where(Record.institution.in_(institutions))
    if institution is not None:
        query = query.where(Record.institution == institution)
    rows = session.scalars(query.order_by(Record.id).limit(limit)).all()
    return [{"record": json.loads(r.canonical), "leaf_hash": r.leaf_hash} for r in rows]


KINDS = (KIND_WITNESS, KIND_PROJECT, KIND_DEVICE, KIND_STAFF, KIND_QUALIFICATION)


def iter_entries(
    session: Session, *, institution: str | None = None, kind: str | None = None,
    page: int = 500,
) -> Iterator[dict[str, Any]]:
    """Every registry record (of one lab, of one `body.kind`), oldest first, page by page:
    what `jianzheng registry list` prints."""
    after = ""
    while True:
        rows = list_entries(
            session, institutions=None, institution=institution, after=after, limit=page
        )
        for row in rows:
            if kind is None or row["record"].get("body", {}).get("kind") == kind:
                yield row
        if len(rows) < page:
            return
        after = rows[-1]["record"]["id"]


#: The default window of `expiring`, in days.
EXPIRING_DAYS = 30


def expiring(
    session: Session,
    *,
    institutions: list[str] | None,
    today: date,
    days: int = EXPIRING_DAYS,
    institution: str | None = None,
) -> list[dict[str, Any]]:
    """Qualification certificates and device calibrations of the given institutions (None:
    all) whose last valid day falls within `days` days from `today` (inclusive), soonest
    first: what the agency should have renewed before the lab works outside them."""
    last = today + timedelta(days=days)
    quals = select(RegistryQualification).where(
        RegistryQualification.valid_until >= today, RegistryQualification.valid_until <= last
    )
    devices = select(RegistryDevice).where(
        RegistryDevice.valid_until >= today, RegistryDevice.valid_until <= last
    )
    if institutions is not None:
        quals = quals.where(RegistryQualification.institution.in_(institutions))
        devices = devices.where(RegistryDevice.institution.in_(institutions))
    if institution is not None:
        quals = quals.where(RegistryQualification.institution == institution)
        devices = devices.where(RegistryDevice.institution == institution)
    rows: list[dict[str, Any]] = [
        {
            "kind": KIND_QUALIFICATION,
            "institution": q.institution,
            "certificate_no": q.certificate_no,
            "valid_until": q.valid_until.isoformat(),
            "days_left": (q.valid_until - today).days,
            "record_id": q.record_id,
        }
        for q in session.scalars(quals)
    ]
    rows += [
        {
            "kind": KIND_DEVICE,
            "institution": d.institution,
            "device_id": d.device_id,
            "name": d.name,
            "valid_until": d.valid_until.isoformat(),
            "days_left": (d.valid_until - today).days,
            "record_id": d.record_id,
        }
        for d in session.scalars(devices)
    ]
    return sorted(rows, key=lambda r: (r["valid_until"], r["institution"], r["kind"]))
