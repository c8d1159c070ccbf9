"""The evidence certificate (存证证书, §7.6) of anchored reports on the session's Hardhat
node: who may fetch it, valid in pdfsig and the pyHanko validator, every record of the
bundle with the hashes and anchors `jianzheng-verify --json` prints, the revocation state,
its QR opens the page, and `POST /api/v1/public/verify` tells a genuine one from a
modified one."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pypdfium2
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from starlette.testclient import TestClient

from service.anchoring.chaininfo import ChainInfo
from service.anchoring.worker import AnchorWorker, anchor_until_drained
from service.client import JianzhengClient
from service.state import ServiceState
from signer.keys import load_certificates
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import state_with_chain
from tests.fixtures.signer import pdfsig
from tests.labkit import add_auditor, add_lab, client_for, make_app
from tests.public_kit import Built, issue_report
from tests.qr_kit import qr_texts
from verifier.cli import main as verify_main

pytestmark = pytest.mark.chain
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class World:
    state: ServiceState
    chain: ChainInfo
    app: Any
    lab: JianzhengClient
    other_lab: JianzhengClient
    auditor: JianzhengClient
    genuine: Built
    revoked: Built


@pytest.fixture(scope="module")
def world(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("cert")
    chain = new_chain(hardhat)
    state = state_with_chain(tmp, f"sqlite:///{tmp / 'jz.db'}", chain,
                             public={"rate_limit_per_minute": 0})
    app = make_app(state)
    lab_account = add_lab(state, 71)
    assert lab_account.institution is not None
    lab = client_for(app, lab_account)
    worker = AnchorWorker(state.settings, state.engine, chain)
    genuine = issue_report(state, lab, lab_account.institution, "C1")
    revoked = issue_report(state, lab, lab_account.institution, "C2")
    anchor_until_drained(worker)
    r = lab.post(f"/api/v1/reports/{revoked.code}/revocation",
                 json_body={"reason": "报告编号重复", "superseded_by": None})
    assert r.status_code == 201, r.text
    anchor_until_drained(worker)
    anchor_until_drained(worker)
    yield World(state, chain, app, lab, client_for(app, add_lab(state, 72)),
                client_for(app, add_auditor(state)), genuine, revoked)
    state.engine.dispose()


def _text(pdf: bytes) -> str:
    doc = pypdfium2.PdfDocument(pdf)
    try:
        return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()


def _certificate(world: World, code: str) -> bytes:
    r = world.lab.get(f"/api/v1/reports/{code}/certificate")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    return r.content


def test_who_may_fetch_it(world: World) -> None:
    code = world.genuine.code
    assert world.auditor.get(f"/api/v1/reports/{code}/certificate").status_code == 200
    r = world.other_lab.get(f"/api/v1/reports/{code}/certificate")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    anon = TestClient(world.app).get(f"/api/v1/reports/{code}/certificate")
    assert anon.status_code == 401


def test_certificate_is_valid_in_pdfsig_and_pyhanko(world: World, tmp_path: Path) -> None:
    pdf = _certificate(world, world.genuine.code)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "certificate.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "2",
                    str(ARTIFACTS / "certificate.pdf"), str(ARTIFACTS / "certificate")],
                   check=False)
    roots = world.state.signer.get().ca.roots_pem()
    nss = tmp_path / "nss"
    nss.mkdir()
    (tmp_path / "root.pem").write_bytes(roots)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{nss}", "-n", "root", "-t", "C,C,C",
                    "-i", str(tmp_path / "root.pem")], check=True)
    out = pdfsig(pdf, f"sql:{nss}", tmp_path)
    assert "Signature Validation: Signature is Valid." in out, out
    assert "Certificate Validation: Certificate is Trusted." in out, out
    assert "Total document signed" in out
    (sig,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    vc = ValidationContext(trust_roots=load_certificates(roots), allow_fetching=False)
    status = validate_pdf_signature(sig, vc, ts_validation_context=vc)
    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert "Jianzheng Evidence Certificates" in status.signing_cert.subject.human_friendly
    from pypdf import PdfReader

    box = PdfReader(io.BytesIO(pdf)).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4


def test_it_lists_every_record_of_the_bundle_as_the_verifier_prints(
    world: World, tmp_path: Path
) -> None:
    code = world.genuine.code
    pdf = _certificate(world, code)
    text = _text(pdf)
    r = world.auditor.get(f"/api/v1/audit/reports/{code}/bundle")
    assert r.status_code == 200
    (tmp_path / "b.zip").write_bytes(r.content)
    verify_main([str(tmp_path / "b.zip"), "--rpc", world.chain.rpc_url, "--registry",
                 world.chain.registry, "--chain-id", str(world.chain.chain_id),
                 "--json", str(tmp_path / "v.json")])
    report = json.loads((tmp_path / "v.json").read_text())
    checked = {c["record_id"] for c in report["results"][0]["checks"] if c["record_id"]}
    import zipfile

    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    proofs = manifest["proofs"]
    assert {p["record"]["id"] for p in proofs} == checked  # what the verifier checked
    leaf_lines = re.findall(r"leaf_hash ([0-9a-f]{64})", text)
    assert sorted(leaf_lines) == sorted(p["leaf_hash"] for p in proofs)
    for p in proofs:
        assert p["record"]["id"] in text
        assert p["anchor"]["tx_hash"] in text and p["batch"]["root"] in text
        assert f"block {p['anchor']['block_number']} " in text
        assert (f"batch seq {p['batch']['seq']} leaf_index {p['batch']['leaf_index']} "
                f"tree_size {p['batch']['tree_size']}") in text
        for f in p["record"].get("files") or []:
            assert f["sha256"] in text
    assert f"chain_id {world.chain.chain_id} registry {world.chain.registry}" in text
    for label in ("电子数据存证证书", "报告标识码", "检测机构", "工程项目", "检测结论",
                  "合格", "出具时间", "未被作废或更正", "BG-2026-C1"):
        assert label in text, label


def test_revocation_state_and_qr(world: World) -> None:
    pdf = _certificate(world, world.revoked.code)
    text = _text(pdf)
    assert "已作废" in text and "报告编号重复" in text and "revocation" in text
    doc = pypdfium2.PdfDocument(pdf)
    try:
        image = doc[0].render(scale=150 / 72).to_pil()
    finally:
        doc.close()
    (url,) = qr_texts(image)
    assert url == f"{world.state.settings.public.base_url}/v/{world.revoked.code}"
    page = TestClient(world.app).get(urlsplit(url).path)
    assert page.status_code == 200 and 'data-status="revoked"' in page.text


def test_public_verify_tells_genuine_from_modified(world: World) -> None:
    pdf = _certificate(world, world.genuine.code)
    client = TestClient(world.app)

    def verdict(data: bytes) -> dict[str, Any]:
        r = client.post("/api/v1/public/verify",
                        files={"file": ("c.pdf", data, "application/pdf")})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    good = verdict(pdf)
    assert good["verdict"] == "genuine" and good["code"] == world.genuine.code
    assert good["status"] == "genuine" and "certificate" in good["detail"]
    # a byte flipped inside the signed range
    i = pdf.index(b"leaf_hash") if b"leaf_hash" in pdf else len(pdf) // 3
    flipped = pdf[:i] + bytes([pdf[i] ^ 1]) + pdf[i + 1:]
    assert verdict(flipped)["verdict"] == "modified"
    # an incremental update appended after the seal
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    w = IncrementalPdfFileWriter(io.BytesIO(pdf))
    w.root["/Lang"] = __import__("pyhanko.pdf_utils.generic", fromlist=["x"]).TextStringObject(
        "en")
    w.update_root()
    out = io.BytesIO()
    w.write(out)
    changed = verdict(out.getvalue())
    assert changed["verdict"] == "modified" and changed["code"] == world.genuine.code
