"""The supervision agency's register (issue 13): witnesses and samplers it vouches for.

- `POST /api/v1/agency/witnesses`: register a person and their key for a lab of the
  agency's region;
- `POST /api/v1/agency/witness-keys/{key_id}/verification`: verify a key the lab proposed;
- `POST /api/v1/agency/devices`, `/staff`, `/qualifications`, `/projects`: the
  institution registry;
- `POST /api/v1/registry-proposals` (labs) and `GET /api/v1/agency/registry-proposals`,
  `POST /api/v1/agency/registry-proposals/{proposal_id}/approval` and `/rejection`
  (agencies): staff, devices and scope a lab proposes and its agency approves;
- `GET /api/v1/audit/registry`: the registry records (auditors and agencies, their region).

Every write is a `registry` evidence record (INTERFACE §7.4), anchored like the rest; an
agency writes only in its region (403 `out_of_region`). See docs/registry.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi import Path as FastapiPath
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from service.api.auth import (
    AgencyDep,
    AuditorDep,
    Caller,
    LabDep,
    SignedRoute,
    check_institution_access,
    lab_institution,
)
from service.api.deps import SessionDep, StateDep
from service.api.idempotency import Idempotency, IdempotencyDep
from service.domain import registry, registry_proposals
from service.domain.accounts import audit_scope
from service.domain.reports.lifecycle import china_today
from service.domain.trust import platform_ca
from service.state import ServiceState

router = APIRouter(route_class=SignedRoute, tags=["registry"])

MAX_LIST = 500


class VouchedOut(BaseModel):
    record_id: str = Field(description="the `registry` evidence record of this write")
    leaf_hash: str
    witness_key: dict[str, Any] = Field(
        description="the key as `GET /api/v1/witness-keys/{key_id}` answers it, now verified, "
        "with its certificate (base64 DER)"
    )


class RegistryEntry(BaseModel):
    record: dict[str, Any] = Field(description="the `registry` evidence record (INTERFACE §1)")
    leaf_hash: str


def _write(session: Session, state: ServiceState, caller: Caller) -> registry.AgencyWrite:
    agency = registry.agency_account(session, caller.auditor_id)
    return registry.AgencyWrite(
        session, state.settings, state.blobs, platform_ca(state.settings), agency
    )


def _append(
    session: Session,
    state: ServiceState,
    caller: Caller,
    idem: Idempotency,
    write: Callable[[registry.AgencyWrite], Any],
) -> Response:
    """An agency write that appends one registry record (`write` returns it): 201 with its
    id and leaf hash."""

    def work() -> tuple[int, Any]:
        record = write(_write(session, state, caller))
        return 201, {"record_id": record.id, "leaf_hash": record.leaf_hash}

    return idem.run(session, work)


@router.post(
    "/api/v1/agency/witnesses",
    status_code=201,
    response_model=VouchedOut,
    summary="Register a witness or sampler and their key for a lab of the agency's region",
    description="Agency keys only. The ID number is checked (GB 11643, 422 "
    "`id_number_invalid`) and masked in the record; the platform CA certifies the key. "
    "A replacement (`replaces` + `effective_on`) registered fewer than "
    "`rules.witness_replacement_notice_working_days` working days before it takes over is "
    "flagged `witness_replacement_late`.",
)
def register_witness(
    body: registry.WitnessRegistrationIn,
    caller: AgencyDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    def work() -> tuple[int, Any]:
        return 201, registry.register_witness(_write(session, state, caller), body).as_json()

    return idem.run(session, work)


@router.post(
    "/api/v1/agency/witness-keys/{key_id}/verification",
    status_code=201,
    response_model=VouchedOut,
    summary="Verify a witness key a lab of the agency's region proposed",
    description="Agency keys only. Seals and witness records the key signs from now on "
    "name this registry record and carry no `witness_unverified` warning.",
)
def verify_witness_key(
    key_id: str,
    body: registry.WitnessVerificationIn,
    caller: AgencyDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    def work() -> tuple[int, Any]:
        write = _write(session, state, caller)
        return 201, registry.verify_witness_key(write, key_id, body).as_json()

    return idem.run(session, work)


class RecordOut(BaseModel):
    record_id: str = Field(description="the `registry` evidence record of this write")
    leaf_hash: str


@router.post(
    "/api/v1/agency/projects",
    status_code=201,
    response_model=RecordOut,
    summary="Enter a project and its responsible units for a lab of the agency's region",
    description="Agency keys only. The lab's project record may then name it "
    "(`registered_project`); the public page says whether the agency entered the project.",
)
def register_project(
    body: registry.ProjectRegistrationIn,
    caller: AgencyDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    return _append(session, state, caller, idem, lambda w: registry.register_project(w, body))


@router.post(
    "/api/v1/agency/devices",
    status_code=201,
    response_model=RecordOut,
    summary="Register a lab's device and its calibration (检定/校准) validity",
    description="Agency keys only. A test record naming a device the agency did not "
    "register carries `device_unregistered`; one tested after the calibration's "
    "`valid_until` carries `calibration_expired` (INTERFACE §7.2). Registering the device "
    "again replaces its entry.",
)
def register_device(
    body: registry.DeviceRegistrationIn,
    caller: AgencyDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    return _append(session, state, caller, idem, lambda w: registry.register_device(w, body))


@router.post(
    "/api/v1/agency/staff",
    status_code=201,
    response_model=RecordOut,
    summary="Register a lab's tester or report approver (with their signing scope)",
    description="Agency keys only. A test record whose `tester` the agency did not register "
    "as a tester carries `tester_unregistered`; once any approver of the lab is registered, a "
    "report's `approver` must be one (422 `approver_unregistered`) whose `signing_scope` "
    "holds every cited test item (422 `approver_out_of_scope`).",
)
def register_staff(
    body: registry.StaffRegistrationIn,
    caller: AgencyDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    return _append(session, state, caller, idem, lambda w: registry.register_staff(w, body))


@router.post(
    "/api/v1/agency/qualifications",
    status_code=201,
    response_model=RecordOut,
    summary="Register a lab's qualification (资质证书) and its scope (检测专项, 检测项目/参数)",
    description="Agency keys only. Once any qualification of the lab is registered, report "
    "metadata citing a test item no certificate of the lab covers is refused (422 "
    "`out_of_scope`, 超资质), and one only a certificate not valid today covers (422 "
    "`qualification_expired`). Registering the same certificate number again replaces its "
    "entry.",
)
def register_qualification(
    body: registry.QualificationRegistrationIn,
    caller: AgencyDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    return _append(
        session, state, caller, idem, lambda w: registry.register_qualification(w, body)
    )


@router.get(
    "/api/v1/audit/registry",
    response_model=list[RegistryEntry],
    tags=["audit"],
    summary="Registry records (the agencies' writes), oldest first",
)
def audit_registry(
    caller: AuditorDep,
    session: SessionDep,
    institution: Annotated[str | None, Query(max_length=18)] = None,
    after: Annotated[str, Query(max_length=26, description="page after this record id")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> Any:
    if institution is not None:
        check_institution_access(session, caller, institution)
    scope = audit_scope(session, caller.auditor_id)
    return registry.list_entries(
        session,
        institutions=scope.institutions(session),
        institution=institution,
        after=after,
        limit=limit,
    )


class ExpiringEntry(BaseModel):
    kind: str = Field(description="`qualification` or `device`")
    institution: str
    certificate_no: str | None = Field(default=None, description="qualification certificate")
    device_id: str | None = None
    name: str | None = Field(default=None, description="the device's name")
    valid_until: str = Field(description="the last valid day (YYYY-MM-DD)")
    days_left: int = Field(description="days from today (China time) to valid_until")
    record_id: str = Field(description="the `registry` record of the current entry")


@router.get(
    "/api/v1/audit/registry/expiring",
    response_model=list[ExpiringEntry],
    response_model_exclude_none=True,
    tags=["audit"],
    summary="Qualifications and device calibrations whose validity ends within `days` days",
    description="Auditors (all, or their region) and agencies (their region). Soonest "
    "first; entries already expired are not listed (they refuse reports or flag test "
    "records instead).",
)
def audit_registry_expiring(
    caller: AuditorDep,
    session: SessionDep,
    institution: Annotated[str | None, Query(max_length=18)] = None,
    days: Annotated[int, Query(ge=0, le=366)] = registry.EXPIRING_DAYS,
) -> Any:
    if institution is not None:
        check_institution_access(session, caller, institution)
    scope = audit_scope(session, caller.auditor_id)
    return registry.expiring(
        session,
        institutions=scope.institutions(session),
        today=china_today(),
        days=days,
        institution=institution,
    )


# --------------------------------------------------------------------------- proposals


class ProposalOut(BaseModel):
    proposal_id: str
    institution: str
    kind: str = Field(description="`staff`, `device` or `qualification`")
    entry: dict[str, Any] = Field(
        description="the proposed entry, the agency's body without `institution` (ID "
        "numbers masked)"
    )
    status: str = Field(description="`pending`, `approved` or `rejected`")
    proposed_at: str
    decided_at: str | None = None
    decided_by: dict[str, Any] | None = Field(
        default=None, description="the agency account that decided: account, name"
    )
    reason: str | None = Field(default=None, description="why it was rejected")
    record_id: str | None = Field(
        default=None, description="the agency's `registry` record of the approval"
    )


class ApprovalOut(BaseModel):
    record_id: str = Field(description="the agency's `registry` record entering the proposal")
    leaf_hash: str
    proposal: ProposalOut


ProposalStatus = Literal["pending", "approved", "rejected"]
ProposalPath = Annotated[str, FastapiPath(max_length=26)]


@router.post(
    "/api/v1/registry-proposals",
    status_code=201,
    response_model=ProposalOut,
    summary="Propose a tester or approver, a device or a qualification for the agency to "
    "approve",
    description="Lab keys only. The body is the agency's `POST /api/v1/agency/staff`, "
    "`/devices` or `/qualifications` body without `institution`, with `kind`; it is checked "
    "as the agency's would be, and waits (`pending`) until the supervision agency of the "
    "lab's region approves it (its own `registry` record) or rejects it. Nothing enters "
    "the registry before.",
)
def propose(
    body: registry_proposals.ProposalIn,
    caller: LabDep,
    session: SessionDep,
    idem: IdempotencyDep,
) -> Response:
    institution = lab_institution(caller)
    return idem.run(
        session, lambda: (201, registry_proposals.propose(session, institution, body))
    )


@router.get(
    "/api/v1/registry-proposals",
    response_model=list[ProposalOut],
    summary="The caller's registry proposals, oldest first",
)
def own_proposals(
    caller: LabDep,
    session: SessionDep,
    status: ProposalStatus | None = None,
    after: Annotated[str, Query(max_length=26, description="page after this proposal id")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> Any:
    return registry_proposals.list_proposals(
        session, institution=lab_institution(caller), status=status, after=after, limit=limit
    )


@router.get(
    "/api/v1/agency/registry-proposals",
    response_model=list[ProposalOut],
    summary="Registry proposals of the labs of the agency's region, oldest first",
    description="Agency keys only; `status=pending` lists what waits for a decision.",
)
def agency_proposals(
    caller: AgencyDep,
    session: SessionDep,
    status: ProposalStatus | None = None,
    institution: Annotated[str | None, Query(max_length=18)] = None,
    after: Annotated[str, Query(max_length=26, description="page after this proposal id")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> Any:
    registry.agency_account(session, caller.auditor_id)
    if institution is not None:
        check_institution_access(session, caller, institution)
    return registry_proposals.list_proposals(
        session,
        institution=institution,
        institutions=audit_scope(session, caller.auditor_id).institutions(session),
        status=status,
        after=after,
        limit=limit,
    )


@router.post(
    "/api/v1/agency/registry-proposals/{proposal_id}/approval",
    status_code=201,
    response_model=ApprovalOut,
    summary="Approve a lab's registry proposal: the agency's registration of it",
    description="Agency keys only, for labs of the agency's region (403 `out_of_region`). "
    "Writes the `registry` record the agency's own `POST /api/v1/agency/staff`, `/devices` "
    "or `/qualifications` would, with `action: \"approve\"` and `proposal` (id, "
    "proposed_at). A decided proposal: 409 `proposal_decided`.",
)
def approve_proposal(
    proposal_id: ProposalPath,
    caller: AgencyDep,
    session: SessionDep,
    state: StateDep,
    idem: IdempotencyDep,
) -> Response:
    def work() -> tuple[int, Any]:
        record, proposal = registry_proposals.approve(
            _write(session, state, caller), proposal_id
        )
        return 201, {"record_id": record.id, "leaf_hash": record.leaf_hash,
                     "proposal": proposal}

    return idem.run(session, work)


@router.post(
    "/api/v1/agency/registry-proposals/{proposal_id}/rejection",
    response_model=ProposalOut,
    summary="Reject a lab's registry proposal, with the reason",
    description="Agency keys only, for labs of the agency's region (403 `out_of_region`). "
    "Nothing enters the registry; the lab sees the reason. A decided proposal: 409 "
    "`proposal_decided`.",
)
def reject_proposal(
    proposal_id: ProposalPath,
    body: registry_proposals.RejectionIn,
    caller: AgencyDep,
    session: SessionDep,
    idem: IdempotencyDep,
) -> Response:
    def work() -> tuple[int, Any]:
        agency = registry.agency_account(session, caller.auditor_id)
        return 200, registry_proposals.reject(session, agency, proposal_id, body.reason)

    return idem.run(session, work)
