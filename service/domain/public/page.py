"""The verification page behind the QR code (`GET /v/{code}`): the view's data rendered
with the template in `service/pages/templates`, zh-CN first, English with `?lang=en`,
every time in Beijing time. No script; the status element is `#status[data-status]`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.clock import CHINA_TZ, utc_now
from service.domain.codes import canonical_or_none
from service.domain.public.presentation import STATUS_LABELS, TIME_FIELDS, display_code

#: The page's names of the details of a step: (zh, en).
FIELD_LABELS: dict[str, tuple[str, str]] = {
    "name": ("名称", "name"),
    "project_name": ("项目名称", "project"),
    "project_no": ("项目编号", "project no."),
    "location": ("地点", "location"),
    "address": ("地址", "address"),
    "builder": ("建设单位", "client"),
    "constructor": ("施工单位", "contractor"),
    "supervisor": ("监理单位", "supervisor"),
    "region": ("区划", "region"),
    "contract_no": ("合同编号", "contract no."),
    "title": ("标题", "title"),
    "signed_on": ("签订日期", "signed on"),
    "client": ("委托单位", "client"),
    "commission_no": ("委托编号", "commission no."),
    "items": ("检测项目", "items"),
    "item": ("检测项目", "item"),
    "test_items": ("检测项目", "items"),
    "sample_code": ("样品编码", "sample code"),
    "unique_code": ("唯一性编码", "unique code"),
    "code": ("编码", "code"),
    "sample_name": ("样品名称", "sample"),
    "spec": ("规格", "spec"),
    "specification": ("规格", "spec"),
    "quantity": ("数量", "quantity"),
    "sampled_at": ("取样时间", "sampled at"),
    "sampler": ("取样人", "sampler"),
    "part": ("部位", "part"),
    "seal_code": ("封志编号", "seal no."),
    "sealed_at": ("封样时间", "sealed at"),
    "sealed_by": ("封样人", "sealed by"),
    "algorithm": ("算法", "algorithm"),
    "witness": ("见证人", "witness"),
    "witness_name": ("见证人", "witness"),
    "witness_unit": ("见证单位", "witness unit"),
    "unit": ("单位", "unit"),
    "place": ("地点", "place"),
    "witnessed_at": ("见证时间", "witnessed at"),
    "time": ("时间", "time"),
    "kind": ("类型", "kind"),
    "caption": ("说明", "caption"),
    "taken_at": ("拍摄时间", "taken at"),
    "description": ("说明", "description"),
    "received_at": ("收样时间", "received at"),
    "received_by": ("收样人", "received by"),
    "seal_check": ("验封", "seal check"),
    "seal_intact": ("封志完好", "seal intact"),
    "condition": ("样品状态", "condition"),
    "test_item": ("检测项目", "test"),
    "method": ("方法", "method"),
    "standard": ("标准", "standard"),
    "device": ("设备", "device"),
    "device_id": ("设备编号", "device no."),
    "tested_at": ("检测时间", "tested at"),
    "result": ("结果", "result"),
    "conclusion": ("结论", "conclusion"),
    "tester": ("检测人", "tester"),
    "correction_reason": ("更正原因", "corrected because"),
    "retest_reason": ("复检原因", "retested because"),
    "acquisition": ("采集方式", "acquisition"),
    "started_at": ("开始时间", "started at"),
    "results": ("检测结果", "results"),
    "site": ("检测部位", "site"),
    "plan_no": ("方案编号", "plan no."),
    "plan_kind": ("检测类型", "kind"),
    "planned_start": ("计划开始", "planned start"),
    "planned_end": ("计划结束", "planned end"),
    "report_no": ("报告编号", "report no."),
    "issued_on": ("签发日期", "issued on"),
    "approver": ("批准人", "approver"),
    "reason": ("原因", "reason"),
    "superseded_by": ("更正为", "superseded by"),
    "activities": ("见证内容", "witnessed"),
    "witness_check": ("见证人核验", "witness check"),
    "witness_verified_by": ("核验机构", "verified by"),
    "project_registration": ("项目登记", "project entered by"),
    "registry_kind": ("登记类型", "entry"),
    "calibration_valid_until": ("检定/校准有效期至", "calibrated until"),
    "agency": ("监督机构", "agency"),
    "device_check": ("设备检定/校准", "device calibration"),
    "approver_check": ("批准人登记", "approver"),
    "approver_registered_by": ("登记机构", "registered by"),
}

#: Enumerated values of a step's details as a person reads them: (zh, en).
VALUE_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    # service.domain.records.WitnessActivity
    "activities": {
        "sampling": ("取样", "sampling"),
        "making": ("制样", "specimen making"),
        "marking": ("标识", "marking"),
        "sealing": ("封样", "sealing"),
        "delivery": ("送检", "delivery"),
        "onsite_testing": ("现场检测", "on-site testing"),
    },
    "conclusion": {"pass": ("合格", "pass"), "fail": ("不合格", "fail")},
    # service.domain.records.MediaIn.kind
    "kind": {
        "image": ("图片", "image"),
        "video": ("视频", "video"),
        "audio": ("音频", "audio"),
        "document": ("文档", "document"),
        "data": ("数据", "data"),
    },
    "acquisition": {"auto": ("自动采集", "automatic"), "manual": ("人工录入", "manual")},
    "plan_kind": {
        "onsite": ("现场检测", "on-site testing"),
        "pile_test": ("桩基检测", "pile test"),
    },
    # docs/registry.md
    "witness_check": {
        "agency_verified": ("监督机构已核验", "verified by the supervision agency"),
        "unverified": ("未经监督机构核验", "not verified by a supervision agency"),
    },
    "registry_kind": {
        "witness": ("见证/取样人员核验", "witness or sampler verified"),
        "project": ("工程项目登记", "project entered"),
        "device": ("检测设备登记", "device registered"),
        "staff": ("检测人员登记", "staff registered"),
        "qualification": ("检测资质登记", "qualification registered"),
    },
    "device_check": {
        "valid": ("已登记，检测时在有效期内", "registered, valid on the test day"),
        "expired": ("检测时已过有效期", "expired on the test day"),
        "unregistered": ("设备未经监督机构登记", "device not registered by the agency"),
    },
    "approver_check": {
        "agency_registered": ("监督机构已登记授权签字人", "registered by the supervision agency"),
        "not_registered": ("授权签字人未经监督机构登记", "not registered by the agency"),
    },
    "project_registration": {
        "agency": ("监督机构已登记", "the supervision agency"),
        "lab_only": ("仅检测机构自行登记", "the lab only"),
    },
}

#: The warnings of §7.2 as a person reads them: (zh, en).
WARNING_LABELS: dict[str, tuple[str, str]] = {
    "custody_seal_missing": ("缺少电子封志", "no sample seal"),
    "custody_witness_missing": ("缺少见证记录", "no witness record"),
    "custody_receipt_missing": ("缺少收样验封记录", "no receipt with seal check"),
    "seal_check_failed": ("收样验封未通过", "the seal check at receipt failed"),
    "test_record_uncited": ("检测记录未被报告引用", "a test record the report does not cite"),
    "contract_late": ("合同上传超时", "contract uploaded late"),
    "test_data_late": ("检测数据上传超时", "test data uploaded late"),
    "media_late": ("影像资料上传超时", "key images uploaded late"),
    "test_plan_late": ("检测方案报送超时", "test plan sent late"),
    "onsite_without_plan": ("现场检测无检测方案", "on-site test without a plan"),
    "witness_unverified": ("见证人员未经核验", "witness not verified by the agency"),
    "device_unregistered": ("检测设备未登记", "device not registered"),
    "calibration_expired": ("设备检定/校准过期", "device calibration expired"),
    "tester_unregistered": ("检测人员未登记", "tester not registered"),
}

#: The page templates (service/pages/templates).
TEMPLATES = Path(__file__).resolve().parents[2] / "pages" / "templates"
_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _parse_time(value: Any) -> datetime | None:
    """A point in time from the view's data: RFC 3339 with an offset, or Unix seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def beijing_time(value: Any, en: bool) -> str:
    """Every time on the page, in one form: `2026-11-22 18:00:05 (北京时间)` / `(UTC+8)`."""
    if value is None or value == "":
        return "—"
    parsed = _parse_time(value)
    if parsed is None:
        return str(value)
    stamp = parsed.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} {'(UTC+8)' if en else '(北京时间)'}"


def detail_text(key: str, value: Any, en: bool) -> str:
    """One detail of a step as a person reads it (times in Beijing time, enums translated)."""
    if value is True:
        return "✓"
    if value is False:
        return "✗"
    labels = VALUE_LABELS.get(key, {})
    if isinstance(value, list):
        names = [labels[v][1 if en else 0] if v in labels else str(v) for v in value]
        return (", " if en else "、").join(names)
    if key in TIME_FIELDS:
        return beijing_time(value, en)
    if isinstance(value, str) and value in labels:
        return labels[value][1 if en else 0]
    return str(value)


def render_page(code: str, data: dict[str, Any] | None, en: bool) -> str:
    """The verification page of `code` (as typed) from its view's data (None: never issued)."""
    status = data["status"] if data else "unknown"
    zh, english = STATUS_LABELS[status]

    def t(zh_text: str | None, en_text: str | None) -> str:
        return (en_text if en else zh_text) or (zh_text or en_text or "")

    # Only a well-formed code is ever shown or linked; raw input is not echoed back.
    canonical = data["code"] if data else canonical_or_none(code)
    if canonical:
        base = f"/v/{canonical}"
        other_lang_url = base if en else base + "?lang=en"
    else:
        other_lang_url = "?lang=zh" if en else "?lang=en"
    return _env.get_template("report.html").render(
        en=en,
        t=t,
        status=status,
        status_zh=zh,
        status_en=english,
        code_display=display_code(canonical) if canonical else None,
        v=data or {},
        r=(data or {}).get("report"),
        local=lambda v: beijing_time(v, en),
        show=lambda k, v: detail_text(k, v, en),
        group=display_code,
        time_fields=TIME_FIELDS,
        label=lambda k: t(*FIELD_LABELS.get(k, (k, k))),
        warning_label=lambda c: WARNING_LABELS.get(c, (c, c)),
        other_lang_url=other_lang_url,
        checked_at=beijing_time(utc_now().isoformat(), en),
    )
