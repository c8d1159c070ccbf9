"""Registry entries a lab proposes and its supervision agency approves (issue 13).

The registry's staff (testers, approvers), devices (with their calibration) and
qualification scope are the agency's word: only an agency of the lab's region writes them
(service/domain/registry.py). A lab may propose one — the same body the agency would send,
without `institution` — and the proposal waits, a `registry_proposals` row, not evidence:
nothing the lab says enters the registry by itself. The agency of the lab's region lists
the pending proposals and

- approves one: the very registration the agency would have made (`registry.register_*`,
  the same checks and the same `registry` record and registry row), whose record says
  `action: "approve"` and names the proposal (`proposal`: id, proposed_at);
- or rejects it with a reason (the row only: nothing entered the registry).

An agency of another region gets 403 `out_of_region`, a decided proposal 409
`proposal_decided`. Witness keys have their own proposal route (`POST
/api/v1/witness-keys`, verified by `POST /api/v1/agency/witness-keys/{key_id}/verification`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import rfc3339, utc_now
from service.domain import registry
from service.domain.evidence import new_record_id
from service.domain.masking import mask_id_number
from service.errors import Conflict, NotFound
from service.storage.models import Auditor, Record, RegistryProposal

STATUS_PENDING = "pending"
STATUS_APPROVED = "approved"
STATUS_REJECTED = "rejected"
STATUSES = (STATUS_PENDING, STATUS_APPROVED, STATUS_REJECTED)
#: Longest rejection reason kept.
MAX_REASON_CHARS = 500


class StaffProposalIn(registry.StaffEntry):
    """A tester or approver the lab proposes (the agency's `POST /api/v1/agency/staff` body
    without `institution`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "staff", **registry.STAFF_EXAMPLE}]},
    )

    kind: Literal["staff"]


class DeviceProposalIn(registry.DeviceEntry):
    """A device and its calibration the lab proposes (the agency's `POST
    /api/v1/agency/devices` body without `institution`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "device", **registry.DEVICE_EXAMPLE}]},
    )

    kind: Literal["device"]


class QualificationProposalIn(registry.QualificationEntry):
    """A qualification and its scope the lab proposes (the agency's `POST
    /api/v1/agency/qualifications` body without `institution`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"kind": "qualification", **registry.QUALIFICATION_EXAMPLE}]
        },
    )

    kind: Literal["qualification"]


ProposalIn = Annotated[
    StaffProposalIn | DeviceProposalIn | QualificationProposalIn, Field(discriminator="kind")
]


class RejectionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "检定证书编号与原件不符，请核对后重新提交"}]},
    )

    reason: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON_CHARS)]


#: kind -> (the agency's request model, the agency's registration).
_REGISTER: dict[str, tuple[type[BaseModel], Callable[[registry.AgencyWrite, Any], Record]]] = {
    registry.KIND_STAFF: (registry.StaffRegistrationIn, registry.register_staff),
    registry.KIND_DEVICE: (registry.DeviceRegistrationIn, registry.register_device),
    registry.KIND_QUALIFICATION: (
        registry.QualificationRegistrationIn, registry.register_qualification,
    ),
}


def propose(
    session: Session, institution: str, data: StaffProposalIn | DeviceProposalIn
    | QualificationProposalIn,
) -> dict[str, Any]:
    """The lab's proposal, checked as the agency's registration would check it (so an
    approval cannot fail on the body), kept pending (caller commits)."""
    if isinstance(data, StaffProposalIn):
        registry.check_staff(data)
    elif isinstance(data, DeviceProposalIn):
        registry.check_device(data)
    else:
        registry.check_qualification_entry(data)
    row = RegistryProposal(
        id=new_record_id(),
        institution=institution,
        kind=data.kind,
        entry=_dump(data.model_dump(mode="json", exclude={"kind"}, exclude_none=True)),
        proposed_at=utc_now(),
        status=STATUS_PENDING,
    )
    session.add(row)
    session.flush()
    return proposal_json(session, row)


def _load(session: Session, proposal_id: str) -> RegistryProposal:
    row = (
        session.scalars(
            select(RegistryProposal).where(RegistryProposal.id == proposal_id).with_for_update()
        ).first()
        if len(proposal_id) <= 26
        else None
    )
    if row is None:
        raise NotFound("proposal_not_found", f"no registry proposal {proposal_id}")
    return row


def _pending(session: Session, agency: Auditor, proposal_id: str) -> RegistryProposal:
    """The proposal, locked, if it is pending and its lab is in the agency's region."""
    row = _load(session, proposal_id)
    registry.check_agency_region(session, agency, row.institution)
    if row.status != STATUS_PENDING:
        raise Conflict(
            "proposal_decided",
            f"registry proposal {proposal_id} was {row.status} already",
            status=row.status,
            record_id=row.record_id,
        )
    return row


def approve(w: registry.AgencyWrite, proposal_id: str) -> tuple[Record, dict[str, Any]]:
    """The agency approves a pending proposal of a lab of its region: the registration it
    would have entered itself, naming the proposal (caller commits)."""
    row = _pending(w.session, w.agency, proposal_id)
    model, register = _REGISTER[row.kind]
    data = model.model_validate({**json.loads(row.entry), "institution": row.institution})
    ref = {"id": row.id, "proposed_at": rfc3339(row.proposed_at)}
    record = register(dataclasses.replace(w, proposal=ref), data)
    row.status, row.record_id = STATUS_APPROVED, record.id
    row.entry = _dump(_masked(json.loads(row.entry)))  # the full ID number is used up
    row.decided_by, row.decided_at = w.agency.id, utc_now()
    w.session.flush()
    return record, proposal_json(w.session, row)


def reject(
    session: Session, agency: Auditor, proposal_id: str, reason: str
) -> dict[str, Any]:
    """The agency rejects a pending proposal of a lab of its region (caller commits)."""
    row = _pending(session, agency, proposal_id)
    row.status, row.reason = STATUS_REJECTED, reason
    row.entry = _dump(_masked(json.loads(row.entry)))
    row.decided_by, row.decided_at = agency.id, utc_now()
    session.flush()
    return proposal_json(session, row)


def list_proposals(
    session: Session,
    *,
    institution: str | None = None,
    institutions: list[str] | None = None,
    status: str | None = None,
    after: str = "",
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Proposals oldest first: of one lab, and/or of `institutions` (None: all)."""
    query = select(RegistryProposal).where(RegistryProposal.id > after)
    if institution is not None:
        query = query.where(RegistryProposal.institution == institution)
    if institutions is not None:
        query = query.where(RegistryProposal.institution.in_(institutions))
    if status is not None:
        query = query.where(RegistryProposal.status == status)
    rows = session.scalars(query.order_by(RegistryProposal.id).limit(limit)).all()
    return [proposal_json(session, r) for r in rows]


def _dump(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, sort_keys=True)


def _masked(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its ID number masked, as the registry record shows it. A pending
    proposal keeps the full number (the approval checks and masks it, as the agency's own
    registration does); a decided one keeps only the masked form."""
    person = entry.get("person")
    if isinstance(person, dict) and "id_number" in person:
        return {**entry,
                "person": {**person, "id_number": mask_id_number(person["id_number"].upper())}}
    return entry


def proposal_json(session: Session, row: RegistryProposal) -> dict[str, Any]:
    entry = _masked(json.loads(row.entry))
    decider = session.get(Auditor, row.decided_by) if row.decided_by else None
    return {
        "proposal_id": row.id,
        "institution": row.institution,
        "kind": row.kind,
        "entry": entry,
        "status": row.status,
        "proposed_at": rfc3339(row.proposed_at),
        "decided_at": rfc3339(row.decided_at) if row.decided_at else None,
        "decided_by": (
            {"account": decider.id, "name": decider.name} if decider is not None else None
        ),
        "reason": row.reason,
        "record_id": row.record_id,
    }
