"""Public verification on a real chain: the page, the JSON, the verify endpoint, tampering.

One world per module: a Hardhat node (session fixture), a registry of our own, reports
built through the lab API and anchored by the real anchoring worker. Every public
response is kept and scanned for unmasked personal data at the end.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from service.anchoring.worker import AnchorWorker, anchor_until_drained
from service.domain.public import ReportViews
from service.state import ServiceState
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import state_with_chain
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import Built, issue_report, make_pdf, privacy_findings, sealed_bytes

pytestmark = pytest.mark.chain

RESPONSES: list[tuple[str, str]] = []
MAX_PAGE_BYTES = 60 * 1024


class World:
    def __init__(self, state: ServiceState, http: TestClient, reports: dict[str, Built]) -> None:
        self.state = state
        self.http = http
        self.reports = reports

    def get(self, path: str) -> httpx.Response:
        r = self.http.get(path)
        RESPONSES.append((path, r.text if "pdf" not in r.headers.get("content-type", "") else ""))
        return r

    def verify(self, data: bytes, name: str, media_type: str) -> dict[str, Any]:
        r = self.http.post("/api/v1/public/verify", files={"file": (name, data, media_type)})
        RESPONSES.append(("verify " + name, r.text))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert set(body) >= {"verdict", "code", "status"}
        return body

    def report(self, key: str) -> dict[str, Any]:
        r = self.get(f"/api/v1/public/reports/{self.reports[key].code}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def views(self) -> ReportViews:
        views = self.state.views.get()
        assert isinstance(views, ReportViews)
        return views


@pytest.fixture(scope="module")
def world(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("public")
    chain = new_chain(hardhat)
    state = state_with_chain(
        tmp,
        f"sqlite:///{tmp / 'jz.db'}",
        chain,
        public={"rate_limit_per_minute": 0, "base_url": "https://jz.example.cn"},
    )
    assert state.settings.chain.private_key.get_secret_value() == hardhat.service_key
    app = make_app(state)
    lab = add_lab(state, 7)
    client = client_for(app, lab)
    inst = lab.institution
    assert inst is not None
    reports = {
        "genuine": issue_report(state, client, inst, "G1"),
        "revoked": issue_report(state, client, inst, "R1"),
        "old": issue_report(state, client, inst, "U1"),
        "new": issue_report(state, client, inst, "U2"),
        "tampered": issue_report(state, client, inst, "T1"),
    }
    r = client.post(
        f"/api/v1/reports/{reports['revoked'].code}/revocation",
        json_body={"reason": "数据录入错误，联系人 13912345678", "superseded_by": None},
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/api/v1/reports/{reports['old'].code}/revocation",
        json_body={"reason": "结论更正", "superseded_by": reports["new"].code},
    )
    assert r.status_code == 201, r.text
    worker = AnchorWorker(state.settings, state.engine, chain)
    anchor_until_drained(worker)
    anchor_until_drained(worker)  # revocations are sent once the batches are anchored
    reports["pending"] = issue_report(state, client, inst, "P1")  # never anchored
    yield World(state, TestClient(app), reports)
    state.engine.dispose()


def test_genuine_json_has_every_fact_and_a_checked_chain(world: World) -> None:
    data = world.report("genuine")
    built = world.reports["genuine"]
    assert data["status"] == "genuine"
    assert data["code"] == built.code
    assert data["problem"] is None and data["revocation"] is None
    report = data["report"]
    assert report["report_no"] == "BG-2026-G1"
    assert report["conclusion"] == "pass" and report["issued_on"] == "2026-11-22"
    assert report["approver"] == "王*"
    assert report["project"] == "深圳湾科技园G1号楼"
    assert report["institution"]["name"]
    assert data["signature"]["checked"] and data["signature"]["ok"], data["signature"]
    assert data["signature"]["timestamped"] is True
    anchor = data["anchor"]
    assert anchor["chain_id"] == world.state.chain.chain_id  # type: ignore[union-attr]
    assert anchor["block_number"] > 0 and anchor["tx_hash"].startswith("0x")
    steps = data["chain"]
    assert [s["type"] for s in steps] == [
        "project", "contract", "commission", "sample", "seal", "witness", "receipt",
        "test_record", "report", "report", "report",
    ]
    assert {s["record_id"] for s in steps} == set(built.record_ids.values())
    assert all(s["check"] == "verified" for s in steps)
    assert all(s["created_at"] for s in steps)
    witness = next(s for s in steps if s["type"] == "witness")
    assert witness["details"]["witness"] == "张**"
    assert data["sealed_pdf"]["sha256"] == built.sealed["sha256"]
    r = world.get(data["sealed_pdf"]["url"])
    assert r.status_code == 200 and r.content == sealed_bytes(world.state, built)


def test_genuine_page_zh_and_en(world: World) -> None:
    code = world.reports["genuine"].code
    r = world.get(f"/v/{code}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert len(r.content) <= MAX_PAGE_BYTES
    html = r.text
    assert 'data-status="genuine"' in html and "真实有效" in html
    for text_ in ("BG-2026-G1", "深圳湾科技园G1号楼", "合格", "2026-11-22", "王*", "工程项目",
                  "检测合同", "委托单", "样品", "电子封志", "见证记录", "收样验封", "检测数据",
                  "报告签章", "签章有效", "区块链存证"):
        assert text_ in html, text_
    assert html.count('data-check="verified"') == 11
    assert f"/api/v1/public/reports/{code}/pdf" in html
    assert "<script" not in html
    en = world.get(f"/v/{code.lower()}?lang=en")
    assert en.status_code == 200 and 'data-status="genuine"' in en.text
    assert "Genuine" in en.text and 'lang="en"' in en.text


RAW_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\+08:00|\d\d:\d\d(:\d\d)?Z")
UTC_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BEIJING = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(北京时间\)")
BEIJING_EN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(UTC\+8\)")


def test_times_are_beijing_on_the_page_and_utc_in_json(world: World) -> None:
    code = world.reports["genuine"].code
    data = world.report("genuine")
    steps = {s["type"]: s for s in data["chain"]}
    # the JSON: RFC 3339 UTC everywhere, whatever offset a record carries
    assert steps["seal"]["details"]["sealed_at"] == "2026-11-22T01:41:00Z"  # signed +08:00
    assert steps["witness"]["details"]["witnessed_at"] == "2026-11-22T01:30:00Z"
    assert steps["sample"]["details"]["sampled_at"] == "2026-11-22T01:30:00Z"
    times = [s["created_at"] for s in data["chain"]] + [data["anchor"]["time"]] + [
        v for s in data["chain"] for k, v in s["details"].items() if k.endswith("_at")]
    assert times and all(UTC_RFC3339.match(t) for t in times), times
    # the page: one Beijing-time form, no raw RFC 3339 left
    html = world.get(f"/v/{code}").text
    body = html[html.index("<body>"):]
    assert not RAW_TIME.search(body), RAW_TIME.search(body)
    assert "2026-11-22 09:41:00 (北京时间)" in body  # the seal, signed at 09:41 +08:00
    assert "2026-11-22 09:30:00 (北京时间)" in body  # sampled at 01:30 UTC
    assert "2026-11-22 14:00:00 (北京时间)" in body  # received at 06:00 UTC
    # every step's time, the seal's, the anchor's and the check time
    assert len(BEIJING.findall(body)) >= len(data["chain"]) + 3
    en = world.get(f"/v/{code}?lang=en").text
    en_body = en[en.index("<body>"):]
    assert not RAW_TIME.search(en_body) and "北京时间" not in en_body
    assert "2026-11-22 09:41:00 (UTC+8)" in en_body
    assert len(BEIJING_EN.findall(en_body)) >= len(data["chain"]) + 3


def test_witness_activities_are_translated(world: World) -> None:
    from typing import get_args

    from service.domain.public.page import VALUE_LABELS
    from service.domain.records import WitnessActivity

    assert set(VALUE_LABELS["activities"]) == set(get_args(WitnessActivity))
    code = world.reports["genuine"].code
    witness = next(s for s in world.report("genuine")["chain"] if s["type"] == "witness")
    assert witness["details"]["activities"] == ["sampling", "sealing"]
    html = world.get(f"/v/{code}").text
    assert "见证内容" in html and "取样、封样" in html
    assert "sampling" not in html and "sealing" not in html
    assert "<dt>结论</dt><dd>合格</dd>" in html  # the report step's conclusion, not "pass"
    en = world.get(f"/v/{code}?lang=en").text
    assert "sampling, sealing" in en and "取样" not in en


def test_revoked(world: World) -> None:
    data = world.report("revoked")
    assert data["status"] == "revoked"
    assert data["revocation"]["on_chain"] is True
    assert data["revocation"]["reason"] == "数据录入错误，联系人 139****5678"
    html = world.get(f"/v/{data['code']}").text
    assert 'data-status="revoked"' in html and "已作废" in html


def test_superseded_links_the_new_report(world: World) -> None:
    data = world.report("old")
    new = world.reports["new"].code
    assert data["status"] == "superseded"
    assert data["superseded_by"]["code"] == new
    html = world.get(f"/v/{data['code']}").text
    assert 'data-status="superseded"' in html and "已更正" in html
    assert f'href="https://jz.example.cn/v/{new}"' in html
    assert world.report("new")["status"] == "genuine"


def test_pending_anchor(world: World) -> None:
    data = world.report("pending")
    assert data["status"] == "pending_anchor"
    assert data["anchor"] is None
    assert {s["check"] for s in data["chain"]} == {"pending"}
    html = world.get(f"/v/{data['code']}").text
    assert 'data-status="pending_anchor"' in html and "待上链" in html


def test_unknown_code(world: World) -> None:
    from service.domain.codes import generate_code

    never = generate_code("440300", 2026).canonical
    for code in (never, "NOT-A-CODE", "x" * 300):
        r = world.get(f"/api/v1/public/reports/{code}")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "unknown_code"
        page = world.get(f"/v/{code}")
        assert page.status_code == 404
        assert 'data-status="unknown"' in page.text and "未找到" in page.text


def test_edited_row_is_tampered_naming_the_step_and_cache_follows(world: World) -> None:
    built = world.reports["tampered"]
    views = world.views()
    assert world.report("tampered")["status"] == "genuine"
    before = views.checker.full_checks
    assert world.report("tampered")["status"] == "genuine"
    assert views.checker.full_checks == before  # unchanged chain: every check cached

    sample_id = built.record_ids["sample"]
    with world.state.engine.begin() as conn:
        original = conn.execute(
            text("SELECT canonical FROM records WHERE id = :id"), {"id": sample_id}
        ).scalar_one()
        edited = bytes(original).replace("混凝土试块".encode(), "混凝土试件".encode())
        assert edited != original
        conn.execute(
            text("UPDATE records SET canonical = :c WHERE id = :id"),
            {"c": edited, "id": sample_id},
        )
    try:
        data = world.report("tampered")
        assert data["status"] == "tampered"
        assert data["problem"]["record_id"] == sample_id
        assert data["problem"]["type"] == "sample"
        assert data["problem"]["step"]["zh"] == "样品"
        checks = {s["record_id"]: s["check"] for s in data["chain"]}
        assert checks[sample_id] == "failed"
        assert checks[built.record_ids["project"]] == "verified"
        html = world.get(f"/v/{built.code}").text
        assert 'data-status="tampered"' in html and "数据异常" in html
        assert 'data-step="sample"' in html
    finally:
        with world.state.engine.begin() as conn:
            conn.execute(
                text("UPDATE records SET canonical = :c WHERE id = :id"),
                {"c": original, "id": sample_id},
            )
    assert world.report("tampered")["status"] == "genuine"


def test_swapped_file_is_tampered_naming_the_contract(world: World) -> None:
    built = world.reports["tampered"]
    with world.state.sessions() as s:
        sha = s.execute(
            text("SELECT sha256 FROM record_files WHERE record_id = :id"),
            {"id": built.record_ids["contract"]},
        ).scalar_one()
    path = world.state.blobs.path(sha)
    original = path.read_bytes()
    path.write_bytes(make_pdf(1, "伪造合同"))
    try:
        data = world.report("tampered")
        assert data["status"] == "tampered"
        assert data["problem"]["type"] == "contract"
        assert data["problem"]["step"]["zh"] == "检测合同"
    finally:
        path.write_bytes(original)
    assert world.report("tampered")["status"] == "genuine"


def test_verify_pdf_verdicts(world: World) -> None:
    built = world.reports["genuine"]
    sealed = sealed_bytes(world.state, built)
    out = world.verify(sealed, "report.pdf", "application/pdf")
    assert out == {**out, "verdict": "genuine", "code": built.code, "status": "genuine"}

    # one byte flipped inside the signed range
    modified = bytearray(sealed)
    modified[len(built.pdf) // 2] ^= 0x01
    out = world.verify(bytes(modified), "copy.pdf", "application/pdf")
    assert out["verdict"] == "modified"

    # an incremental update appended after the signature (over-drawing a page)
    out = world.verify(sealed + _overdraw_update(sealed), "update.pdf", "application/pdf")
    assert out["verdict"] == "modified"

    out = world.verify(make_pdf(1, "别人的报告"), "foreign.pdf", "application/pdf")
    assert out["verdict"] == "not_ours" and out["status"] is None

    revoked = sealed_bytes(world.state, world.reports["revoked"])
    out = world.verify(revoked, "revoked.pdf", "application/pdf")
    assert out["verdict"] == "genuine" and out["status"] == "revoked"

    out = world.verify(b"%PDF-1.7\n garbage", "broken.pdf", "application/pdf")
    assert out["verdict"] == "unreadable"


def test_verify_photo_of_a_printed_page(world: World) -> None:
    import pypdfium2 as pdfium
    from PIL import Image

    built = world.reports["genuine"]
    pdf = pdfium.PdfDocument(sealed_bytes(world.state, built))
    page = pdf[0].render(scale=300 / 72).to_pil().convert("RGB")
    pdf.close()
    page = page.resize((page.width // 2, page.height // 2), Image.Resampling.BILINEAR)
    page = page.rotate(5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    buf = io.BytesIO()
    page.save(buf, format="JPEG", quality=30)
    out = world.verify(buf.getvalue(), "photo.jpg", "image/jpeg")
    assert out["verdict"] == "genuine"
    assert out["code"] == built.code and out["status"] == "genuine"


def test_verify_photo_verdict_follows_the_report_status(world: World) -> None:
    """§5.3: an image is `genuine` only when its QR names a report whose status is genuine;
    a QR of ours naming a report that does not stand is never `genuine`."""
    import segno

    for key, status in (
        ("genuine", "genuine"),
        ("revoked", "revoked"),
        ("old", "superseded"),
        ("pending", "pending_anchor"),
    ):
        code = world.reports[key].code
        buf = io.BytesIO()
        segno.make_qr(f"https://jz.example.cn/v/{code}", error="m").save(buf, kind="png", scale=8)
        out = world.verify(buf.getvalue(), "qr.png", "image/png")
        assert out["status"] == status and out["code"] == code, (key, out)
        assert out["verdict"] == ("genuine" if status == "genuine" else "modified"), (key, out)


def test_verify_other_images(world: World) -> None:
    import segno
    from PIL import Image

    rng = random.Random(6)
    noise = Image.frombytes("L", (400, 300), bytes(rng.randrange(256) for _ in range(120_000)))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    out = world.verify(buf.getvalue(), "noise.png", "image/png")
    assert out == {**out, "verdict": "unreadable", "code": None, "status": None}

    for url in ("https://evil.example.com/v/4403002612345ABCDE1", "https://jz.example.cn/v/NOPE"):
        buf = io.BytesIO()
        segno.make_qr(url).save(buf, kind="png", scale=8)
        out = world.verify(buf.getvalue(), "qr.png", "image/png")
        assert out["verdict"] == "not_ours", url

    out = world.verify(b"neither a pdf nor an image", "x.bin", "application/octet-stream")
    assert out["verdict"] == "unreadable"


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    from service.state import build_state
    from tests.fixtures.db import make_settings

    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'rl.db'}", public={"rate_limit_per_minute": 8}
    )
    state = build_state(settings, chain=None)
    try:
        http = TestClient(make_app(state))
        statuses = [http.get("/api/v1/public/reports/NOPE").status_code for _ in range(4)]
        assert statuses[:2] == [404, 404] and statuses[-1] == 429
        r = http.get("/v/NOPE")
        assert r.status_code == 429
        assert r.json()["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        r = http.post("/api/v1/public/verify", files={"file": ("x", b"x", "text/plain")})
        assert r.status_code == 429
    finally:
        state.engine.dispose()


def test_no_public_response_leaks_personal_data(world: World) -> None:
    # make sure every kind of answer was seen, then scan them all
    for key in world.reports:
        world.report(key)
        world.get(f"/v/{world.reports[key].code}")
        world.get(f"/v/{world.reports[key].code}?lang=en")
    assert len(RESPONSES) > 30
    leaks = {path: privacy_findings(body) for path, body in RESPONSES}
    assert {p: f for p, f in leaks.items() if f} == {}


def _overdraw_update(sealed: bytes) -> bytes:
    """An incremental update that over-draws page 1 (what a forger would append)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(sealed))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    stream = generic.StreamObject(stream_data=b"1 1 1 rg 72 700 300 40 re f")
    ref = writer.add_object(stream)
    contents = page["/Contents"]
    arr = generic.ArrayObject(contents if isinstance(contents, list) else [contents])
    arr.append(ref)
    page["/Contents"] = arr
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    data = out.getvalue()
    assert data.startswith(sealed)
    return data[len(sealed):]
