"""The console's HTML pages: Jinja templates in service/pages/templates/console, zh-CN,
every time in Beijing time; the shared labels of the public page (FIELD_LABELS, ...)."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from service.domain.public.page import (
    FIELD_LABELS,
    TEMPLATES,
    VALUE_LABELS,
    WARNING_LABELS,
    beijing_time,
)
from service.domain.public.presentation import STATUS_LABELS, display_code

_env = Environment(
    loader=FileSystemLoader(TEMPLATES / "console"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

#: report_codes.status as a person reads it.
CODE_STATUS = {"issued": "已赋码", "reported": "已出具", "revoked": "已作废", "voided": "已作废号",
               "superseded": "已更正"}
CONCLUSION = {"pass": "合格", "fail": "不合格", None: "—", "none": "未出结论"}
ACTIONS = {"view_report": "查看报告（未脱敏）", "download_bundle": "下载证据包",
           "download_pdf": "下载签章报告", "download_certificate": "下载存证证书"}
#: Names of record fields the public page does not show (it shows fewer), for the console.
MORE_LABELS = {
    "construction_unit": "施工单位", "supervision_unit": "监理单位", "flags": "规则提示",
    "parties": "合同各方", "signature": "签名", "signed": "签名内容", "witness_key": "见证密钥",
    "accepted": "验收结论", "observed_sample_code": "实收样品编码", "checks": "验封结果",
    "seal_record_id": "封志记录", "finished_at": "结束时间", "started_at": "开始时间",
    "material": "材料", "original_sha256": "原始 PDF 哈希", "page_count": "页数",
    "qr": "二维码", "signature_level": "签章级别", "stage": "阶段", "year": "年度",
    "device": "检测设备", "standard": "检测依据", "tester": "检测人", "raw_data": "原始数据",
    "condition": "样品状态", "received_at": "收样时间", "receiver": "收样人",
    "id_number": "身份证号", "phone": "电话", "retest_reason": "复检原因",
    "corrects": "更正记录", "correction_reason": "更正原因", "contractor": "承包单位",
    "commissioned_on": "委托日期", "results": "检测结果", "name": "名称", "role": "角色",
    "unit": "单位", "algorithm": "算法", "public_key": "公钥", "fingerprint": "指纹",
    "key_id": "密钥编号", "limit_s": "时限（秒）", "delay_s": "延迟（秒）", "rule": "规则",
    "received": "收到时间", "record_intact": "记录完好", "sample_code_matches": "样品编码一致",
    "seal_intact": "封志完好", "signature_valid": "签名有效", "failed": "未通过项",
    "result": "结果", "quantity": "数量", "activities": "见证内容", "location": "地点",
    "registry_record_id": "登记记录", "certificate": "证书", "scope": "资质范围",
    "specialty": "检测专项", "issued_by": "发证机关", "valid_from": "有效期自",
    "valid_until": "有效期至", "no": "编号",
}


def _show(key: str, value: Any, depth: int = 0) -> str:
    text = _people(key, value, depth)
    return text if len(text) <= 400 else text[:400] + "…"


def _people(key: str, value: Any, depth: int = 0) -> str:
    """A record field for people: nested objects as `名称：值` lists, lists joined, yes/no in
    Chinese (the console shows the data unmasked but not as raw JSON)."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, str):
        label = VALUE_LABELS.get(key, {}).get(value)
        return label[0] if label else value
    if value is None:
        return "—"
    if isinstance(value, dict) and depth < 3:
        return "；".join(
            f"{FIELD_LABELS.get(k, (MORE_LABELS.get(k, k), k))[0]}：{_people(k, v, depth + 1)}"
            for k, v in value.items()
        ) or "—"
    if isinstance(value, list) and depth < 3:
        return "、".join(_people(key, v, depth + 1) for v in value) or "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
OVERDUE_KINDS = {"receipt": "样品未收样", "test_data": "检测数据未上传"}
NOTIFY = {"pending": "待送达", "delivered": "已送达", "failed": "送达失败", None: "—"}


def _json_script(value: Any) -> Markup:
    """JSON for a <script type="application/json"> element (no `</` can close it)."""
    text = json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
    return Markup(text)  # noqa: S704 - escaped above; not HTML


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(
        local=lambda v: beijing_time(v, False) if v else "—",
        pct=_pct,
        json_script=_json_script,
        code_status=lambda s: CODE_STATUS.get(s, s),
        conclusion=lambda c: CONCLUSION.get(c, c),
        action=lambda a: ACTIONS.get(a, a),
        overdue_kind=lambda k: OVERDUE_KINDS.get(k, k),
        notify=lambda s: NOTIFY.get(s, s),
        warning_label=lambda c: WARNING_LABELS.get(c, (c, c))[0],
        field_label=lambda k: FIELD_LABELS.get(k, (MORE_LABELS.get(k, k), k))[0],
        value_label=_show,
        status_label=lambda s: STATUS_LABELS.get(s, (s, s))[0],
        group=display_code,
        **context,
    )
