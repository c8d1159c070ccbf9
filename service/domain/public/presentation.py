"""What a person sees of a report: its status and the JSON built from its checks.

`build_view_data` decides the status (INTERFACE §5.3) and builds the JSON of
`GET /api/v1/public/reports/{code}`: the masked summary, signature, anchor, revocation
and the checked timeline, each step with its masked details (`public_fields`). The page
renders the same data (`page`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from service.clock import rfc3339
from service.domain import warnings as report_warnings
from service.domain.masking import mask_name, mask_text
from service.domain.public.checks import Checked, safe_obj
from service.domain.public.queries import RecordRow
from verifier import custody
from verifier.models import RevocationInfo

Status = Literal["genuine", "revoked", "superseded", "pending_anchor", "tampered"]

#: Timeline order (project -> ... -> report) and the labels a person sees.
STEP_ORDER: dict[str, float] = {
    "registry": -1,
    "project": 0,
    "contract": 1,
    "commission": 2,
    "sample": 3,
    "seal": 4,
    "witness": 5,
    "media": 6,
    "receipt": 7,
    "test_plan": 7.5,
    "test_record": 8,
    "numbering_void": 9,
    "report": 10,
    "revocation": 11,
}
STEP_LABELS: dict[str, tuple[str, str]] = {
    "registry": ("监督机构登记", "Supervision agency register"),
    "project": ("工程项目", "Project"),
    "contract": ("检测合同", "Contract"),
    "commission": ("委托单", "Commission"),
    "sample": ("样品", "Sample"),
    "seal": ("电子封志", "Sample seal"),
    "witness": ("见证记录", "Witness record"),
    "media": ("影像资料", "Key images"),
    "receipt": ("收样验封", "Receipt"),
    "test_record": ("检测数据", "Test record"),
    "test_plan": ("检测方案", "Test plan"),
    "numbering_void": ("编号作废", "Number voided"),
    "report": ("检测报告", "Report"),
    "revocation": ("作废/更正", "Revocation"),
}
REPORT_ROLE_LABELS: dict[str, tuple[str, str]] = {
    "issue": ("报告赋码", "Report code issued"),
    "metadata": ("报告信息", "Report details"),
    "pdf": ("报告签章", "Report sealed"),
}
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "genuine": ("真实有效", "Genuine"),
    "revoked": ("已作废", "Revoked"),
    "superseded": ("已更正", "Superseded"),
    "pending_anchor": ("待上链", "Pending anchor"),
    "tampered": ("数据异常", "Data anomaly"),
    "unknown": ("未找到", "Not found"),
}

#: Longest text shown for one detail of a step.
MAX_DETAIL_CHARS = 200
#: Most values one list-valued detail of a step (witness activities) carries.
MAX_DETAIL_ITEMS = 12
#: Details that are points in time: RFC 3339 UTC in the JSON (whatever offset the record
#: carries), shown in Beijing time on the page.
TIME_FIELDS = frozenset(
    {
        "sampled_at", "sealed_at", "witnessed_at", "taken_at", "received_at", "tested_at",
        "started_at", "planned_start", "planned_end",
    }
)
#: Image types a key image (关键影像, R2) is shown from on the public page.
KEY_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})

def display_code(code: str) -> str:
    """The code as printed for reading aloud (440300-26-K7QZ3-M9XB2-T, INTERFACE.md §4).

    The signer owns the grouping (it cannot import the service) so the stamp on the PDF
    and the public page show the same form; imported here so that loading this module
    does not pull in the signer's PDF and image libraries.
    """
    from signer.stamp import group_code

    return group_code(code)


def iso(value: Any) -> str | None:
    """A stored time (datetime, Unix seconds, or SQLite's text) as RFC 3339 UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, int | float):
        return rfc3339(value)
    text_value = str(value)
    # SQLite returns "YYYY-MM-DD HH:MM:SS[.ffffff][+00:00]"
    try:
        return iso(datetime.fromisoformat(text_value))
    except ValueError:
        return text_value


# --- the details of one step ------------------------------------------------------------


def _g(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _org(value: Any) -> Any:
    return value.get("name") if isinstance(value, Mapping) else value


def _person(value: Any) -> str | None:
    name = value.get("name") if isinstance(value, Mapping) else value
    return mask_name(str(name)) if name else None


def _witness_check(b: Mapping[str, Any]) -> dict[str, Any]:
    """Who vouched for the witness of a seal or witness record (docs/registry.md): the agency
    whose registry record the platform wrote into the body, or nobody (`witness_unverified`);
    records from before the register say neither."""
    verified = b.get("witness_verified_by")
    if isinstance(verified, Mapping):
        return {"witness_check": "agency_verified", "witness_verified_by": verified.get("agency")}
    flags = b.get("flags")
    rules = [f.get("rule") for f in flags if isinstance(f, Mapping)] if isinstance(
        flags, list) else []
    return {"witness_check": "unverified"} if "witness_unverified" in rules else {}


def _device_check(b: Mapping[str, Any]) -> dict[str, Any]:
    """The device's registration and calibration on the test day (docs/registry.md), from
    the flags the platform wrote: not registered, calibration expired, or else valid."""
    if not b.get("device"):
        return {}
    flags = b.get("flags")
    rules = {f.get("rule") for f in flags if isinstance(f, Mapping)} if isinstance(
        flags, list) else set()
    if "device_unregistered" in rules:
        return {"device_check": "unregistered"}
    if "calibration_expired" in rules:
        return {"device_check": "expired"}
    return {"device_check": "valid"}


def _approver_check(b: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the supervision agency registered the report's approver (授权签字人)."""
    if b.get("event") != "metadata":
        return {}
    registered = b.get("approver_registered_by")
    if isinstance(registered, Mapping):
        return {"approver_check": "agency_registered",
                "approver_registered_by": registered.get("agency")}
    return {"approver_check": "not_registered"}


def _details(type_: str, b: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of each record type a person checking a report wants to see."""
    signed = b.get("signed") if isinstance(b.get("signed"), Mapping) else {}
    if type_ == "project":
        return {
            # docs/registry.md: entered by the supervision agency, or the lab's word alone
            "project_registration": "agency" if b.get("registered_project") else "lab_only",
            "name": b.get("name"),
            "project_no": b.get("project_no"),
            "location": b.get("location"),
            "builder": _org(b.get("construction_unit")),
            "supervisor": _org(b.get("supervision_unit")),
            "constructor": _org(b.get("contractor")),
        }
    if type_ == "contract":
        raw_parties = b.get("parties")
        parties: list[Any] = raw_parties if isinstance(raw_parties, list) else []
        return {
            "contract_no": b.get("contract_no"),
            "signed_on": b.get("signed_on"),
            "client": "、".join(
                str(_org(p)) for p in parties if isinstance(p, Mapping) and p.get("role") != "lab"
            ),
        }
    if type_ == "commission":
        raw_items = b.get("items")
        items: list[Any] = raw_items if isinstance(raw_items, list) else []
        return {
            "commission_no": b.get("commission_no"),
            "client": _org(b.get("client")),
            "items": "、".join(str(_org(i)) for i in items),
        }
    if type_ == "sample":
        qty = b.get("quantity")
        return {
            "sample_code": b.get("sample_code"),
            "sample_name": b.get("name"),
            "specification": " ".join(
                str(v) for v in (b.get("material"), b.get("specification")) if v
            ),
            "quantity": f"{qty:g} {b.get('unit', '')}".strip() if isinstance(qty, int | float)
            else None,
            "sampled_at": b.get("sampled_at"),
            "location": b.get("sampling_location"),
        }
    if type_ == "seal":
        return {
            "sample_code": b.get("sample_code"),
            "sealed_at": _g(signed, "sealed_at"),
            "place": _g(signed, "place"),
            "witness": _person(b.get("witness")),
            **_witness_check(b),
        }
    if type_ == "witness":
        activities = _g(signed, "activities")
        return {
            "witness": _person(b.get("witness")),
            "witness_unit": _g(b, "witness", "unit"),
            "witnessed_at": _g(signed, "witnessed_at"),
            "place": _g(signed, "location"),
            "activities": [str(a) for a in activities] if isinstance(activities, list) else None,
            **_witness_check(b),
        }
    if type_ == "registry":
        person = b.get("person") if isinstance(b.get("person"), Mapping) else {}
        return {
            "registry_kind": b.get("kind"),
            "agency": _g(b, "agency", "name"),
            "name": _g(b, "project", "name") if b.get("kind") == "project" else None,
            "witness": _person(person) if b.get("kind") == "witness" else None,
            "witness_unit": _g(person, "unit"),
            "device": _g(b, "device", "name") if b.get("kind") == "device" else None,
            "device_id": _g(b, "device", "id") if b.get("kind") == "device" else None,
            "calibration_valid_until": _g(b, "calibration", "valid_until"),
        }
    if type_ == "media":
        return {
            "kind": b.get("kind"),
            "taken_at": b.get("captured_at"),
            "description": b.get("description"),
        }
    if type_ == "receipt":
        return {
            "received_at": b.get("received_at"),
            "received_by": _person(b.get("received_by")),
            "seal_intact": b.get("seal_intact"),
            "seal_check": _seal_check_passed(b),
        }
    if type_ == "test_record":
        site = b.get("site") if isinstance(b.get("site"), Mapping) else {}
        return {
            "test_item": b.get("test_item"),
            "standard": b.get("standard"),
            "device": " ".join(
                str(v) for v in (_g(b, "device", "name"), _g(b, "device", "id")) if v
            ),
            **_device_check(b),
            "acquisition": b.get("acquisition"),
            "started_at": b.get("started_at"),
            "tested_at": b.get("finished_at"),
            "tester": _person(b.get("tester")),
            "site": site.get("description") if site else None,
            "results": _results(b.get("results")),
            "correction_reason": b.get("correction_reason"),
            "retest_reason": b.get("retest_reason"),
        }
    if type_ == "test_plan":
        raw_items = b.get("items")
        plan_items: list[Any] = raw_items if isinstance(raw_items, list) else []
        return {
            "plan_no": b.get("plan_no"),
            "plan_kind": b.get("kind"),
            "items": "、".join(str(_org(i)) for i in plan_items),
            "location": b.get("location"),
            "planned_start": b.get("planned_start"),
            "planned_end": b.get("planned_end"),
        }
    if type_ == "report":
        return {
            "report_no": b.get("report_no") if b.get("event") == "code_issued" else None,
            "conclusion": b.get("conclusion"),
            "issued_on": b.get("issued_on"),
            "approver": _person(b.get("approver")),
            **_approver_check(b),
        }
    if type_ == "revocation":
        return {"reason": b.get("reason"), "superseded_by": b.get("superseded_by")}
    return {}


def _results(value: Any) -> str | None:
    """A test record's results as a person reads them: `name value` pairs (the names carry
    the units, e.g. strength_MPa)."""
    if not isinstance(value, Mapping) or not value:
        return None
    parts = []
    for key, val in list(value.items())[:MAX_DETAIL_ITEMS]:
        if isinstance(val, bool) or not isinstance(val, int | float | str):
            val = _detail_text(val)
        parts.append(f"{key}: {val}")
    return "；".join(parts)


def _seal_check_passed(body: Mapping[str, Any]) -> bool | None:
    """The receipt's re-verification of the seal (`domain.seals`): passed, failed, or absent."""
    result = _g(body, "seal_check", "result")
    return {"pass": True, "fail": False}.get(result) if isinstance(result, str) else None


def public_fields(type_: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The masked facts of a record body the public page shows (None/empty dropped)."""
    out: dict[str, Any] = {}
    for key, value in _details(type_, body).items():
        if value is None or value == "" or isinstance(value, Mapping):
            continue
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, list):
            items = [_detail_text(v) for v in value[:MAX_DETAIL_ITEMS] if _scalar(v)]
            if items:
                out[key] = items
        elif key in TIME_FIELDS and (stamp := _utc_rfc3339(value)) is not None:
            out[key] = stamp
        else:
            out[key] = _detail_text(value)
    return out


def _scalar(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, Mapping | list)


def _detail_text(value: Any) -> str:
    text_value = mask_text(str(value))
    if len(text_value) > MAX_DETAIL_CHARS:
        text_value = text_value[: MAX_DETAIL_CHARS - 1] + "…"
    return text_value


def _utc_rfc3339(value: Any) -> str | None:
    """An RFC 3339 time with an offset as UTC (`...Z`); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return rfc3339(parsed)


def key_image(code: str, rec: RecordRow, body: Mapping[str, Any]) -> dict[str, str] | None:
    """A media record's photo, as the page shows it: its SHA-256 and where its public
    (downscaled, metadata-free) rendering is served; None for other records and files."""
    if rec.type != "media" or body.get("kind") != "image":
        return None
    for f in safe_obj(rec.canonical).get("files") or ():
        if (
            isinstance(f, dict)
            and f.get("media_type") in KEY_IMAGE_TYPES
            and isinstance(f.get("sha256"), str)
        ):
            sha = f["sha256"]
            return {"sha256": sha, "url": f"/api/v1/public/reports/{code}/images/{sha}"}
    return None


# --- the view's JSON -------------------------------------------------------------------------


def build_view_data(
    checked: Checked, revocation_chain: RevocationInfo | None, base_url: str
) -> tuple[Status, dict[str, Any]]:
    """The report's status and its public JSON, from the checks and the chain's revocation."""
    row, records, parents = checked.row, checked.records, checked.parents
    checks, bodies = checked.checks, checked.bodies
    signature, sealed_sha = checked.signature, checked.sealed_sha
    code = row.code
    report_roles = {
        row.issue_record_id: "issue",
        row.report_record_id: "metadata",
        row.pdf_record_id: "pdf",
    }
    # media sit just before the first step that uses them
    child_rank: dict[str, float] = {}
    for child_id, parent_ids in parents.items():
        child = records.get(child_id)
        if child is None:
            continue
        for pid in parent_ids:
            parent = records.get(pid)
            if parent is not None and parent.type == "media":
                media_rank = STEP_ORDER.get(child.type, 50) - 0.5
                child_rank[pid] = min(child_rank.get(pid, media_rank), media_rank)
    steps = []
    for rec in records.values():
        rank: float = STEP_ORDER.get(rec.type, 50)
        if rec.type == "report":
            rank += {"issue": 0.0, "metadata": 0.1, "pdf": 0.2}.get(
                report_roles.get(rec.id, ""), 0.3
            )
        rank = child_rank.get(rec.id, rank)
        check = checks[rec.id]
        zh, en = STEP_LABELS.get(rec.type, (rec.type, rec.type))
        if rec.type == "report" and rec.id in report_roles:
            zh, en = REPORT_ROLE_LABELS[report_roles[rec.id]]
        steps.append(
            (
                rank,
                iso(rec.created_at) or "",
                {
                    "record_id": rec.id,
                    "type": rec.type,
                    "step": {"zh": zh, "en": en},
                    "created_at": iso(rec.created_at),
                    "leaf_hash": rec.leaf_hash,
                    "check": check.state,
                    "problem": (
                        {"en": check.problem, "zh": check.problem_zh}
                        if check.problem
                        else None
                    ),
                    "batch_seq": rec.batch_seq,
                    "details": public_fields(rec.type, bodies.get(rec.id, {})),
                    "image": (
                        key_image(code, rec, bodies.get(rec.id, {}))
                        if check.state != "failed"
                        else None
                    ),
                },
            )
        )
    steps.sort(key=lambda s: (s[0], s[1]))
    timeline = [s[2] for s in steps]
    evidence = _evidence(checked)
    for step in timeline:
        if step["type"] == "test_record":
            # §7.2: a test record the report neither cites nor supersedes is shown as such
            step["cited"] = step["leaf_hash"] in evidence.covered
            record_id = str(step["record_id"])
            if _has_raw_data(bodies.get(record_id, {})):
                step["raw_data_url"] = f"/api/v1/public/reports/{code}/raw/{record_id}"

    failed = [s for s in timeline if s["check"] == "failed"]
    waiting = [s for s in timeline if s["check"] in ("pending", "unavailable")]
    expected = [
        rid for rid in (row.issue_record_id, row.report_record_id, row.pdf_record_id)
        if rid
    ]
    missing = [rid for rid in expected if rid not in records]
    sig_failed = signature is not None and signature.checked and not signature.ok

    problem: dict[str, Any] | None = None
    status: Status
    if failed:
        status = "tampered"
        # a record whose anchoring evidence is gone is where the deletion happened; the
        # rest of its batch then fails for the missing leaf
        lost = {rid for rid, c in checks.items() if c.lost}
        first = next((s for s in failed if s["record_id"] in lost), failed[0])
        problem = {
            "record_id": first["record_id"],
            "type": first["type"],
            "step": first["step"],
            "detail": first["problem"],
        }
    elif missing:
        status = "tampered"
        problem = {
            "record_id": missing[0],
            "type": "report",
            "step": {"zh": STEP_LABELS["report"][0], "en": STEP_LABELS["report"][1]},
            "detail": {"en": "a record of the report is missing", "zh": "报告记录缺失"},
        }
    elif evidence.history_missing:
        status = "tampered"
        _sample, leaf = evidence.history_missing[0]
        problem = {
            "record_id": None,
            "type": "history",
            "step": {"zh": "样品全过程记录", "en": "records of the report's samples"},
            "detail": {
                "en": f"the report's history names record {leaf}, which the platform no "
                "longer holds",
                "zh": "报告存证时记录的样品过程数据已缺失（被删除）",
            },
        }
    elif sig_failed:
        status = "tampered"
        assert signature is not None
        problem = {
            "record_id": row.pdf_record_id,
            "type": "report",
            "step": {"zh": REPORT_ROLE_LABELS["pdf"][0], "en": REPORT_ROLE_LABELS["pdf"][1]},
            "detail": {"en": signature.detail or "signature invalid", "zh": "报告电子签章无效"},
        }
    elif row.superseded_by or (
        revocation_chain is not None and row.status == "superseded"
    ):
        status = "superseded"
    elif revocation_chain is not None or row.revocation_record_id or row.status == "revoked":
        status = "revoked"
    elif waiting or not row.pdf_record_id:
        status = "pending_anchor"
    else:
        status = "genuine"

    summary = _summary(checked)
    anchor = None
    final = records.get(row.pdf_record_id or "") if row.pdf_record_id else None
    if final is not None and checks[final.id].state == "verified":
        anchor = {
            "chain_id": final.batch_chain_id,
            "registry": final.batch_registry,
            "batch_seq": final.batch_seq,
            "root": final.batch_root,
            "block_number": final.batch_block_number,
            "block_timestamp": final.batch_block_timestamp,
            "time": iso(final.batch_block_timestamp),
            "tx_hash": final.batch_tx_hash,
        }
    revocation = None
    if status in ("revoked", "superseded") or revocation_chain is not None:
        rev_body = bodies.get(row.revocation_record_id or "", {})
        revocation = {
            "on_chain": revocation_chain is not None,
            "revoked_at": iso(revocation_chain.timestamp) if revocation_chain else None,
            "reason": mask_text(str(rev_body.get("reason", ""))) or None,
            "record_id": row.revocation_record_id,
        }
    superseded = None
    if row.superseded_by:
        superseded = {
            "code": row.superseded_by,
            "url": f"{base_url}/v/{row.superseded_by}",
        }
    data = {
        "code": code,
        "code_display": display_code(code),
        "verify_url": f"{base_url}/v/{code}",
        "status": status,
        "status_text": {"zh": STATUS_LABELS[status][0], "en": STATUS_LABELS[status][1]},
        "report": summary,
        "signature": signature.as_json() if signature else None,
        "sealed_pdf": (
            {"sha256": sealed_sha, "url": f"/api/v1/public/reports/{code}/pdf"}
            if sealed_sha
            else None
        ),
        "anchor": anchor,
        "revocation": revocation,
        "superseded_by": superseded,
        "problem": problem,
        "evidence_complete": evidence.warnings.evidence_complete,
        "warnings": evidence.warnings.as_json(),
        "chain": timeline,
    }
    return status, data


class _Evidence:
    """What the report's own records say about its evidence (INTERFACE §7.1, §7.2)."""

    def __init__(self, checked: Checked) -> None:
        code = checked.row.code
        objs: dict[str, Mapping[str, Any]] = {}
        for rec in checked.records.values():
            obj = safe_obj(rec.canonical)
            if obj:
                objs[rec.leaf_hash] = obj
        reports = {
            leaf: obj
            for leaf, obj in objs.items()
            if obj.get("type") == "report" and _g(obj, "body", "code") == code
        }
        by_id = {str(o.get("id")): leaf for leaf, o in objs.items()}
        self.history_missing = checked.history_missing
        self.warnings = report_warnings.compute(reports, objs)
        self.covered = custody.covered_by(custody.cited(reports), objs, by_id)


def _evidence(checked: Checked) -> _Evidence:
    return _Evidence(checked)


def _has_raw_data(body: Mapping[str, Any]) -> bool:
    return "raw_data" in body or isinstance(body.get("raw_data_file"), str)


def _summary(checked: Checked) -> dict[str, Any]:
    row, records, bodies = checked.row, checked.records, checked.bodies
    meta: Mapping[str, Any] = bodies.get(row.report_record_id or "", {})
    project_body: Mapping[str, Any] = bodies.get(row.project_record_id or "", {})
    if not project_body:
        for rec in records.values():
            if rec.type == "project":
                project_body = bodies.get(rec.id, {})
                break
    project = project_body.get("name")
    approver = meta.get("approver")
    if isinstance(approver, dict):
        approver = approver.get("name")
    return {
        "institution": {"uscc": row.institution, "name": row.institution_name},
        "report_no": row.report_no,
        "project": mask_text(str(project)) if project else None,
        "conclusion": meta.get("conclusion"),
        "issued_on": meta.get("issued_on"),
        "approver": mask_name(str(approver)) if approver else None,
        "code_issued_at": iso(row.issued_at),
        "sealed_at": iso(row.sealed_at),
    }
