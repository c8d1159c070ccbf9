"""The evidence certificate (存证证书) of a report (INTERFACE §7.6).

`issue_certificate` lays out an A4 PDF in Chinese with reportlab (WenQuanYi Zen Hei,
embedded subset): the report's code, number, institution, project, conclusion and status;
every record of the report's evidence bundle (`service.domain.bundle.plan_bundle`, so the
same records, leaf hashes, file hashes and anchors as the bundle and `jianzheng-verify
--json`) with its platform time, SHA-256 fingerprint, batch seq, leaf index, tree size,
root and anchor (chain id, registry, transaction, block number and time); the revocation
state at issue time; the QR code of the report's page; the issue time. The platform then
seals it with PAdES at the deployment's level (`JZ_SIGNING__LEVEL`) with its own key
(`DevCA.platform_key_source`, EKU `EVIDENCE_CERTIFICATE_EKU`; PKCS#11 in production).

`certificate_verdict` is what `POST /api/v1/public/verify` says about a PDF that is one of
these certificates: `genuine` when the platform's certificate key signed it, the signature
is intact, trusted and covers the whole file; `modified` when it carries the certificate's
marks or our key's signature but fails any of that.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from service.anchoring.chaininfo import ChainInfo
from service.clock import CHINA_TZ
from service.domain.bundle import plan_bundle
from service.domain.public import STATUS_LABELS, display_code
from service.domain.public.presentation import STEP_LABELS
from service.domain.signing import ReportSigner
from service.storage.models import Institution, Record, ReportCode

#: The document's /Subject: how the platform (and anyone) recognises a certificate.
CERTIFICATE_FORMAT = "jianzheng-certificate/1"
FONT_PATH = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
MM = 72.0 / 25.4
Verdict = Literal["genuine", "modified"]


@dataclass(frozen=True)
class CertificateRecord:
    record_id: str
    type: str
    created_at: str
    leaf_hash: str
    files: tuple[tuple[str, str], ...]
    seq: int
    leaf_index: int
    tree_size: int
    root: str
    chain_id: int
    registry: str
    tx_hash: str
    block_number: int
    block_timestamp: int
    revocation: bool = False


@dataclass(frozen=True)
class CertificateFacts:
    code: str
    report_no: str
    institution: str
    institution_name: str
    project: str
    conclusion: str
    issued_on: str
    status: str
    revoked_at: str | None
    revocation_reason: str | None
    superseded_by: str | None
    records: tuple[CertificateRecord, ...]


def _record_of(proof: dict[str, Any], *, revocation: bool = False) -> CertificateRecord:
    rec, batch, anchor = proof["record"], proof["batch"], proof["anchor"]
    files = tuple(
        (str(f.get("role", "file")), str(f.get("sha256")))
        for f in rec.get("files") or [] if isinstance(f, dict)
    )
    return CertificateRecord(
        record_id=str(rec["id"]), type=str(rec["type"]), created_at=str(rec["created_at"]),
        leaf_hash=str(proof["leaf_hash"]), files=files, seq=int(batch["seq"]),
        leaf_index=int(batch["leaf_index"]), tree_size=int(batch["tree_size"]),
        root=str(batch["root"]), chain_id=int(anchor["chain_id"]),
        registry=str(anchor["registry"]), tx_hash=str(anchor["tx_hash"]),
        block_number=int(anchor["block_number"]),
        block_timestamp=int(anchor["block_timestamp"]), revocation=revocation,
    )


def certificate_facts(session: Session, code: str, chain: ChainInfo | None) -> CertificateFacts:
    """Everything the certificate states, read in one transaction (BundlePending while a
    record is not anchored yet: a certificate is never issued half-anchored)."""
    plan = plan_bundle(session, code, chain)
    row = session.get(ReportCode, plan.code)
    assert row is not None
    inst = session.get(Institution, row.institution)
    project = session.get(Record, row.project_record_id)
    project_body = json.loads(project.canonical).get("body") or {} if project else {}
    meta = session.get(Record, row.report_record_id) if row.report_record_id else None
    meta_body = json.loads(meta.canonical).get("body") or {} if meta else {}
    records = [_record_of(p) for p in plan.proofs]
    records.sort(key=lambda r: (r.created_at, r.seq, r.leaf_index))
    revoked_at = reason = None
    if plan.revocation is not None:
        records.append(_record_of(plan.revocation, revocation=True))
        revoked_at = str(plan.revocation["record"]["created_at"])
        body = plan.revocation["record"].get("body") or {}
        reason = str(body.get("reason") or "") or None
    status = row.status if row.status in ("revoked", "superseded") else "genuine"
    return CertificateFacts(
        code=plan.code, report_no=row.report_no, institution=row.institution,
        institution_name=inst.name if inst else row.institution,
        project=str(project_body.get("name") or project_body.get("project_name") or "—"),
        conclusion=str(meta_body.get("conclusion") or "—"),
        issued_on=str(meta_body.get("issued_on") or "—"),
        status=status, revoked_at=revoked_at, revocation_reason=reason,
        superseded_by=row.superseded_by, records=tuple(records),
    )


def _beijing(value: str | int) -> str:
    if isinstance(value, int):
        when = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") + " (北京时间)"


def render_certificate(facts: CertificateFacts, page_url: str, issued_at: dt.datetime) -> bytes:
    """The unsigned certificate PDF (A4, Chinese)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    from signer.stamp import qr_matrix

    for name, index in (("JzCertSans", 0), ("JzCertMono", 1)):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, FONT_PATH, subfontIndex=index))
    width, height = A4
    left, right = 18 * MM, width - 18 * MM
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=0, pageCompression=1)
    c.setTitle(f"电子数据存证证书 {facts.code}")
    c.setSubject(CERTIFICATE_FORMAT)
    c.setAuthor("见证 · 检测报告存证平台")
    c.setKeywords(f"{CERTIFICATE_FORMAT} code={facts.code}")
    c.setCreator("Jianzheng")
    issued = _beijing(int(issued_at.timestamp()))
    page_no = [1]

    def footer() -> None:
        c.setFont("JzCertSans", 7.5)
        c.setFillGray(0.35)
        c.drawString(left, 10 * MM, f"报告标识码 {display_code(facts.code)} · 出具时间 {issued}")
        c.drawRightString(right, 10 * MM, f"第 {page_no[0]} 页")
        c.setFillGray(0)

    def new_page() -> float:
        footer()
        c.showPage()
        page_no[0] += 1
        return float(height - 18 * MM)

    # -- header, QR, summary ---------------------------------------------------------------
    c.setFont("JzCertSans", 20)
    c.drawCentredString(width / 2, height - 24 * MM, "电子数据存证证书")
    c.setFont("JzCertSans", 9)
    c.drawCentredString(width / 2, height - 30 * MM,
                        "Evidence Certificate · 见证 · 建设工程质量检测报告存证平台")
    qr = qr_matrix(page_url, "m")
    size = 30 * MM
    n = len(qr)
    m = size / (n + 4)
    x0, y0 = right - size, height - 70 * MM
    path = c.beginPath()
    for r, row in enumerate(qr):
        for col, v in enumerate(row):
            if v & 1:
                path.rect(x0 + (col + 2) * m, y0 + size - (r + 3) * m, m, m)
    c.drawPath(path, stroke=0, fill=1)
    c.setFont("JzCertSans", 7)
    c.drawCentredString(x0 + size / 2, y0 - 3 * MM, "扫码查看在线验证页")
    status_zh = STATUS_LABELS.get(facts.status, (facts.status, facts.status))[0]
    conclusion = {"pass": "合格", "fail": "不合格"}.get(facts.conclusion, facts.conclusion)
    rows = [
        ("报告标识码", display_code(facts.code)),
        ("报告编号", facts.report_no),
        ("检测机构", facts.institution_name),
        ("统一社会信用代码", facts.institution),
        ("工程项目", facts.project),
        ("检测结论", conclusion),
        ("签发日期", facts.issued_on),
        ("报告状态", status_zh),
        ("出具时间", issued),
    ]
    y = height - 42 * MM
    for label, value in rows:
        c.setFont("JzCertSans", 9.5)
        c.setFillGray(0.35)
        c.drawString(left, y, label)
        c.setFillGray(0)
        c.drawString(left + 30 * MM, y, value[:60])
        y -= 6 * MM
    y -= 2 * MM
    c.setFont("JzCertSans", 9)
    if facts.revoked_at:
        word = "更正" if facts.status == "superseded" else "作废"
        text = f"撤销状态：该报告已于 {_beijing(facts.revoked_at)} {word}"
        if facts.superseded_by:
            text += f"，新报告 {display_code(facts.superseded_by)}"
        if facts.revocation_reason:
            text += f"；原因：{facts.revocation_reason[:40]}"
    else:
        text = "撤销状态：截至出具时间，该报告未被作废或更正。"
    c.drawString(left, y, text)
    y -= 6 * MM
    c.setFont("JzCertSans", 8.5)
    for line in (
        f"本证书列出该报告证据包中的全部 {len(facts.records)} 条存证记录。每条记录的规范 JSON"
        "（RFC 8785）经 SHA-256 计算为叶哈希，",
        "按 RFC 6962 组成 Merkle 树，树根写入区块链 EvidenceRegistry 合约。"
        "可用 jianzheng-verify 对证据包独立核验。",
    ):
        c.drawString(left, y, line)
        y -= 4.5 * MM
    y -= 2 * MM

    # -- records -----------------------------------------------------------------------------
    c.setFont("JzCertSans", 12)
    c.drawString(left, y, "存证记录")
    y -= 6 * MM
    for i, rec in enumerate(facts.records, 1):
        lines = 6 + len(rec.files)
        if y - lines * 3.6 * MM < 18 * MM:
            y = new_page()
        step = STEP_LABELS.get(rec.type, (rec.type, rec.type))[0]
        c.setFont("JzCertSans", 9)
        c.drawString(left, y, f"{i}. {step}（{rec.type}）  记录 {rec.record_id}  "
                              f"平台时间 {_beijing(rec.created_at)}")
        y -= 4.2 * MM
        c.setFont("JzCertMono", 6.6)
        out = [f"leaf_hash {rec.leaf_hash}"]
        out += [f"file {role} sha256 {sha}" for role, sha in rec.files]
        out += [
            f"batch seq {rec.seq} leaf_index {rec.leaf_index} tree_size {rec.tree_size}",
            f"root {rec.root}",
            f"chain_id {rec.chain_id} registry {rec.registry}",
            f"tx_hash {rec.tx_hash}",
            f"block {rec.block_number} time {_beijing(rec.block_timestamp)}",
        ]
        for line in out:
            c.drawString(left + 4 * MM, y, line)
            y -= 3.4 * MM
        y -= 1.6 * MM
    footer()
    c.showPage()
    c.save()
    return buf.getvalue()


def issue_certificate(
    signer: ReportSigner, facts: CertificateFacts, base_url: str, issued_at: dt.datetime
) -> bytes:
    """The certificate PDF, PAdES-sealed with the platform's certificate key."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    from signer.pades import sign_writer, signature_metadata

    pdf = render_certificate(facts, f"{base_url.rstrip('/')}/v/{facts.code}", issued_at)
    if signer.settings.signing.certificate_sm2:
        pdf = _with_sm2_cosignature(signer, pdf, facts, issued_at)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    level = signer.settings.signing.level
    meta = signature_metadata(
        f"JianzhengCertificate-{facts.code}", level, ltv_context=signer.ltv_context(),
        reason="电子数据存证证书 / evidence certificate",
    )
    return sign_writer(writer, signer.platform_key(), meta, level=level,
                       timestamper=signer.timestamper)


def sm2_statement(facts: CertificateFacts, issued_at: dt.datetime) -> dict[str, Any]:
    """What the SM2 co-signature states (verifier/certificate_sm2.py)."""
    return {
        "code": facts.code,
        "report_no": facts.report_no,
        "institution": facts.institution,
        "status": facts.status,
        "issued_at": int(issued_at.timestamp()),
        "records": [
            {
                "record_id": r.record_id, "type": r.type, "leaf_hash": r.leaf_hash,
                "files": [{"role": role, "sha256": sha} for role, sha in r.files],
                "seq": r.seq, "root": r.root, "chain_id": r.chain_id, "registry": r.registry,
                "tx_hash": r.tx_hash, "block_number": r.block_number,
            }
            for r in facts.records
        ],
    }


def _with_sm2_cosignature(
    signer: ReportSigner, pdf: bytes, facts: CertificateFacts, issued_at: dt.datetime
) -> bytes:
    """`pdf` with the SM2 co-signature attached (before PAdES, which then covers it)."""
    import base64

    from pypdf import PdfReader, PdfWriter

    from signer.sm2qr import platform_sm2_key
    from verifier.certificate_sm2 import ATTACHMENT, FORMAT, statement_bytes

    key, cert = platform_sm2_key(signer.ca)
    statement = sm2_statement(facts, issued_at)
    doc = {
        "format": FORMAT,
        "statement": statement,
        "signature": {
            "alg": "SM2",
            "certificate": base64.b64encode(cert).decode("ascii"),
            "value": base64.b64encode(key.sign_raw(statement_bytes(statement))).decode("ascii"),
        },
    }
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.add_attachment(ATTACHMENT, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def certificate_verdict(
    signer: ReportSigner, data: bytes
) -> tuple[Verdict, str | None, str] | None:
    """(verdict, code, detail) when `data` is one of our evidence certificates (or claims to
    be), None when it is not a certificate at all."""
    ours = signer.platform_key().signer.signing_cert
    if ours is None:  # pragma: no cover - a PKCS#12 key always has its certificate
        return None
    return certificate_verdict_of(data, ours.sha256, _roots(signer))


def certificate_verdict_of(
    data: bytes, platform_cert_sha256: bytes, roots_der: list[bytes]
) -> tuple[Verdict, str | None, str] | None:
    """`certificate_verdict` from plain facts (the platform certificate's SHA-256 and the
    trusted roots), so that it can run in a sandbox child on a file someone sent."""
    marked = CERTIFICATE_FORMAT.encode("ascii") in data
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = list(reader.embedded_signatures)
        info = reader.trailer_view.get("/Info")
        keywords = str(info.get_object().get("/Keywords", "")) if info is not None else ""
    except Exception:  # noqa: BLE001 - a damaged file is judged by the caller's checks
        return ("modified", None, "an evidence certificate that cannot be read") if marked \
            else None
    code = next((w[5:] for w in keywords.split() if w.startswith("code=")), None)
    by_us = [s for s in signatures if s.signer_cert is not None
             and s.signer_cert.sha256 == platform_cert_sha256]
    if not by_us and not marked:
        return None
    if not by_us or len(signatures) != 1:
        return "modified", code, "carries the marks of an evidence certificate but not " \
            "the platform's signature alone"
    roots = [asn1_x509.Certificate.load(der) for der in roots_der]
    vc = ValidationContext(trust_roots=roots, allow_fetching=False)
    try:
        status = validate_pdf_signature(by_us[0], vc, ts_validation_context=vc)
    except Exception:  # noqa: BLE001
        return "modified", code, "the certificate's signature cannot be validated"
    whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    if status.intact and status.valid and status.trusted and whole:
        return "genuine", code, "an evidence certificate sealed by the platform, unchanged"
    return "modified", code, "an evidence certificate changed after the platform sealed it"


def _roots(signer: ReportSigner) -> list[bytes]:
    from service.domain.trust import trust_roots_der

    return trust_roots_der(signer.settings, signer.ca)
