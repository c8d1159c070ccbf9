"""Builds reports with a whole traceable chain for the public-verification and sealing tests.

The chain records (project ... test record) are written through the evidence layer
(`append_record`, the write path every lab route ends in), with realistic bodies that
carry personal data (ID numbers, phone numbers, names) so the privacy scan has something
to find; the report itself goes through the real HTTP API with the signing client:
`POST /api/v1/report-codes`, `PUT /api/v1/reports/{code}`, `PUT .../pdf`.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from typing import Any

from service.client import JianzhengClient
from service.domain.evidence import FileRef, append_record
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Record

#: Personal data planted in the chain: none of it may appear unmasked in public answers.
WITNESS_NAME = "张三丰"
WITNESS_ID = "11010519491231002X"
WITNESS_PHONE = "13912345678"
RECEIVER_NAME = "李四"
APPROVER_NAME = "王五"
TESTER_NAME = "赵六"
CONTACT_PHONE = "0755-86681234"
PII_STRINGS = (WITNESS_ID, WITNESS_PHONE, "三丰", RECEIVER_NAME, APPROVER_NAME, TESTER_NAME,
               "86681234")

ID_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
PHONE_RE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?![0-9A-Za-z])")


def privacy_findings(text: str) -> list[str]:
    """Unmasked personal data in a public response body."""
    found = [m.group(0) for m in ID_RE.finditer(text)]
    found += [m.group(0) for m in PHONE_RE.finditer(text)]
    found += [s for s in PII_STRINGS if s in text]
    return found


def make_pdf(pages: int = 2, title: str = "检测报告") -> bytes:
    """A lab's report PDF with Chinese text (reportlab, embedded font subset)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    if "WQY" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(
            TTFont("WQY", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", subfontIndex=0)
        )
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    for page in range(pages):
        c.setFont("WQY", 20)
        c.drawString(72, 760, f"{title} 第 {page + 1} 页")
        c.setFont("WQY", 12)
        c.drawString(72, 720, "检测结论：合格。混凝土抗压强度 32.5 MPa。")
        c.showPage()
    c.save()
    return buf.getvalue()


@dataclass
class Built:
    code: str
    record_ids: dict[str, str] = field(default_factory=dict)
    sealed: dict[str, Any] = field(default_factory=dict)
    pdf: bytes = b""


def _append(
    state: ServiceState,
    institution: str,
    type_: str,
    body: dict[str, Any],
    parents: list[str],
    files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
) -> str:
    refs = []
    for role, data, media_type in files:
        sha = state.blobs.put(data)
        refs.append(FileRef(role, sha, len(data), media_type))
    with session_scope(state.sessions) as s:
        rows = [s.get(Record, p) for p in parents]
        assert all(r is not None for r in rows)
        rec = append_record(
            s, type=type_, institution=institution, body=body,
            parents=[r for r in rows if r is not None], files=refs,
        )
        return rec.id


def build_chain(state: ServiceState, institution: str, tag: str) -> dict[str, str]:
    """project -> contract -> commission -> sample -> seal/witness -> receipt -> test record."""
    ids: dict[str, str] = {}
    ids["project"] = _append(state, institution, "project", {
        "name": f"深圳湾科技园{tag}号楼",
        "project_no": f"4403052026{tag:0>4}",
        "location": "深圳市南山区科苑南路",
        "construction_unit": {"name": "深圳湾建设有限公司"},
        "contact_phone": CONTACT_PHONE,
    }, [])
    ids["contract"] = _append(state, institution, "contract", {
        "contract_no": f"HT-2026-{tag}",
        "signed_on": "2026-11-20",
        "parties": [{"role": "client", "name": "深圳湾建设有限公司"},
                    {"role": "lab", "name": "深圳市某检测有限公司"}],
    }, [ids["project"]], [("contract_pdf", make_pdf(1, f"合同 {tag}"), "application/pdf")])
    ids["commission"] = _append(state, institution, "commission", {
        "commission_no": f"WT-2026-{tag}",
        "client": {"name": "深圳湾建设有限公司"},
        "items": [{"name": "混凝土抗压强度", "standard": "GB/T 50081-2019"}],
    }, [ids["contract"]])
    sample_code = f"YP20261122{tag:0>5}"
    ids["sample"] = _append(state, institution, "sample", {
        "sample_code": sample_code, "name": "混凝土试块", "material": "C30 混凝土",
        "quantity": 3, "unit": "组", "sampled_at": "2026-11-22T01:30:00Z",
    }, [ids["commission"]])
    witness = {"name": WITNESS_NAME, "id_number": WITNESS_ID, "phone": WITNESS_PHONE}
    ids["seal"] = _append(state, institution, "seal", {
        "sample_code": sample_code,
        "signed": {"format": "jianzheng-seal/1", "sample_code": sample_code,
                   "sealed_at": "2026-11-22T09:41:00+08:00", "place": "施工现场 标养室",
                   "images": []},
        "witness": witness,
    }, [ids["sample"]])
    ids["witness"] = _append(state, institution, "witness", {
        "witness": {**witness, "unit": "鹏城监理有限公司"},
        "signed": {"format": "jianzheng-witness/1", "sample_codes": [sample_code],
                   "witnessed_at": "2026-11-22T09:30:00+08:00",
                   "location": f"现场，联系电话 {WITNESS_PHONE}",
                   "activities": ["sampling", "sealing"], "images": []},
    }, [ids["sample"], ids["seal"]])
    ids["receipt"] = _append(state, institution, "receipt", {
        "received_at": "2026-11-22T06:00:00Z", "received_by": RECEIVER_NAME,
        "seal_intact": True, "accepted": True,
        # the shape domain.seals.SealCheck.as_json() stores
        "seal_check": {"result": "pass", "checks": {"record_intact": True}, "failed": []},
    }, [ids["seal"]])
    ids["test_record"] = _append(state, institution, "test_record", {
        "test_item": "混凝土抗压强度", "standard": "GB/T 50081-2019",
        "device": {"id": "YJ-001", "name": "压力试验机"}, "acquisition": "auto",
        "started_at": "2026-11-22T07:00:00Z", "finished_at": "2026-11-22T07:10:00Z",
        "raw_data": {"peak_kN": 731.2}, "tester": TESTER_NAME,
    }, [ids["sample"], ids["receipt"]])
    return ids


def issue_report(
    state: ServiceState, client: JianzhengClient, institution: str, tag: str, *, seal: bool = True
) -> Built:
    """A whole chain plus a report code with metadata and (optionally) its sealed PDF."""
    ids = build_chain(state, institution, tag)
    r = client.issue_code(f"BG-2026-{tag}", ids["project"])
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    ids["report_issue"] = r.json()["record_id"]
    r = client.put(
        f"/api/v1/reports/{code}",
        json_body={
            "conclusion": "pass",
            "issued_on": "2026-11-22",
            "approver": APPROVER_NAME,
            "parents": [ids["sample"], ids["test_record"]],
        },
    )
    assert r.status_code in (200, 201), r.text
    ids["report_metadata"] = r.json()["record_id"]
    built = Built(code=code, record_ids=ids)
    if seal:
        built.pdf = make_pdf(2, f"检测报告 {tag}")
        r = client.put(
            f"/api/v1/reports/{code}/pdf", content=built.pdf, content_type="application/pdf"
        )
        assert r.status_code == 200, r.text
        built.sealed = r.json()
        ids["report_pdf"] = built.sealed["record_id"]
    return built


def sealed_bytes(state: ServiceState, built: Built) -> bytes:
    data = state.blobs.get(built.sealed["sha256"])
    assert hashlib.sha256(data).hexdigest() == built.sealed["sha256"]
    return data
