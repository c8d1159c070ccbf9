"""The full story end to end on Hardhat, through the service as its own process.

register project → contract → commission → sample + seal → witness → receipt (seal checked)
→ test record → code → report metadata → PDF sealed → anchored by the worker → public page
genuine → bundle downloaded by an auditor and verified by `jianzheng-verify` (a subprocess)
with the service stopped → report revoked (on chain) → page and CLI say revoked (exit 3).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.anchoring.chaininfo import ChainInfo
from tests.anchoring_support import REPO_ROOT, wait_for
from tests.fixtures.chain import DevChain, new_chain
from tests.public_kit import privacy_findings
from tests.story_support import (
    PUBLIC_RESPONSES,
    ServiceProcess,
    Story,
    build_story,
    fetch_bundle,
    run_verify,
)
from verifier.cli import main as verify_main

pytestmark = pytest.mark.chain
ARTIFACTS = REPO_ROOT / "test-artifacts"


def _lines(out: str, status: str, name: str) -> list[str]:
    return [line for line in out.splitlines() if line.split()[:2] == [status, name]]


@pytest.mark.parametrize("log_hash", ["sha256", "sm3"])
def test_full_story(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory,
                    log_hash: str) -> None:
    """The default deployment, and one with national algorithms (§7.7): an SM3 log, an
    HMAC-SM3 lab key and SM2 witness keys."""
    tmp = tmp_path_factory.mktemp("e2e")
    chain = new_chain(hardhat)
    service = ServiceProcess(tmp / "var", chain, hardhat.service_key, evidence_hash=log_hash)
    try:
        _story(service, chain, tmp, log_hash)
    finally:
        service.close()
    leaks = [(what, privacy_findings(text)) for what, text in PUBLIC_RESPONSES]
    assert [leak for leak in leaks if leak[1]] == []


def _story(service: ServiceProcess, chain: ChainInfo, tmp: Path, log_hash: str) -> None:
    national = log_hash == "sm3"
    lab_account = service.add_lab(61, "hmac-sm3" if national else "hmac-sha256")
    auditor_account = service.add_auditor()
    service.start()
    lab = service.client(lab_account)
    auditor = service.client(auditor_account)
    story: Story = build_story(lab, "E2E1", witness_algorithm="sm2" if national else "ed25519")
    code = story.code

    # anchored by the worker thread of `jianzheng serve`; the page turns genuine
    wait_for(lambda: service.public_json(code)["status"] == "genuine", 60, "genuine page",
             interval=0.3)
    data = service.public_json(code)
    steps = {s["record_id"]: s for s in data["chain"]}
    for step in ("project", "contract", "commission", "sample", "seal", "witness", "receipt",
                 "test_record", "report_pdf"):
        assert steps[story.ids[step]]["check"] == "verified", (step, steps.get(story.ids[step]))
    page = service.public_get(f"/v/{code}")
    assert page.status_code == 200 and 'data-status="genuine"' in page.text
    assert "真实有效" in page.text

    # the bundle is for auditors only
    assert lab.get(f"/api/v1/audit/reports/{code}/bundle").status_code == 403
    unsigned = httpx.get(f"{service.base_url}/api/v1/audit/reports/{code}/bundle")
    assert unsigned.status_code == 401
    bundle_bytes = fetch_bundle(auditor, code)
    with zipfile.ZipFile(io.BytesIO(bundle_bytes)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        members = set(zf.namelist())
    assert manifest["format"] == "jianzheng-bundle/1" and manifest["code"] == code
    assert manifest["report_record_id"] == story.ids["report_pdf"]
    assert manifest["revocation"] is None and manifest["unproven"] == []
    assert manifest.get("hash", "sha256") == log_hash
    assert all(p.get("hash", "sha256") == log_hash for p in manifest["proofs"])
    in_bundle = {p["record"]["id"] for p in manifest["proofs"]}
    assert set(story.ids.values()) <= in_bundle
    for sha in (story.sealed["sha256"], story.sealed["original_sha256"], story.chain.image_sha256):
        assert f"files/{sha}" in members

    bundle = tmp / "bundle.zip"
    bundle.write_bytes(bundle_bytes)
    roots = tmp / "roots.pem"
    roots.write_text(subprocess.run(
        [sys.executable, "-m", "service.cli", "ca", "roots"], env=service.env(), cwd=REPO_ROOT,
        capture_output=True, text=True, check=True, timeout=60).stdout)
    assert "BEGIN CERTIFICATE" in roots.read_text()

    # --- the service stops; the auditor needs only the bundle and the chain ---------------
    service.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(service.base_url + "/healthz", timeout=2)
    report_json = tmp / "report.json"
    run = run_verify(bundle, None, chain, "--trust-roots", str(roots), "--json", str(report_json))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "e2e-verify-genuine.txt").write_text(run.stdout + run.stderr, "utf-8")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FAIL" not in run.stdout and not _lines(run.stdout, "WARN", "trust")
    assert _lines(run.stdout, "PASS", "sealed_pdf"), run.stdout
    assert "chains to a pinned root" in _lines(run.stdout, "PASS", "sealed_pdf")[0]
    assert _lines(run.stdout, "PASS", "batch_sequence") and _lines(run.stdout, "PASS",
                                                                    "parent_links")
    # the seal's and the witness record's signatures, re-verified from the bundle (R7, R8)
    signed = _lines(run.stdout, "PASS", "witness_signature")
    assert len(signed) == 2 and all("signature verifies" in line for line in signed), signed
    assert f"{bundle}: GENUINE" in run.stdout
    doc = json.loads(report_json.read_text("utf-8"))
    assert doc["exit_code"] == 0 and doc["results"][0]["status"] == "genuine"
    checked = {c["record_id"] for c in doc["results"][0]["checks"] if c["name"] == "record_hash"}
    assert set(story.ids.values()) <= checked

    # unpinned: the bundle's own chain values are trusted, and the CLI says so
    unpinned = subprocess.run(
        [str(Path(sys.executable).parent / "jianzheng-verify"), str(bundle), "--rpc",
         chain.rpc_url], capture_output=True, text=True, timeout=180)
    assert unpinned.returncode == 0, unpinned.stdout
    assert _lines(unpinned.stdout, "WARN", "trust") and _lines(unpinned.stdout, "WARN",
                                                                "sealed_pdf_trust")

    # --- revocation: on chain, then page and CLI say revoked ------------------------------
    service.start()
    r = lab.post(f"/api/v1/reports/{code}/revocation",
                 json_body={"reason": "报告结论有误", "superseded_by": None})
    assert r.status_code == 201, r.text
    revoked_bytes = fetch_bundle(auditor, code)  # 202 until anchored and revoked on chain
    with zipfile.ZipFile(io.BytesIO(revoked_bytes)) as zf:
        revoked_manifest = json.loads(zf.read("manifest.json"))
    assert revoked_manifest["revocation"]["record"]["type"] == "revocation"
    assert service.public_json(code)["status"] == "revoked"
    page = service.public_get(f"/v/{code}")
    assert 'data-status="revoked"' in page.text and "已作废" in page.text
    service.stop()

    revoked = tmp / "revoked.zip"
    revoked.write_bytes(revoked_bytes)
    run = run_verify(revoked, None, chain, "--trust-roots", str(roots))
    (ARTIFACTS / "e2e-verify-revoked.txt").write_text(run.stdout + run.stderr, "utf-8")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "FAIL" not in run.stdout
    assert _lines(run.stdout, "WARN", "revocation") and f"{revoked}: REVOKED" in run.stdout
    # the chain decides, whatever the bundle says: the old bundle is revoked too
    assert verify_main([str(bundle), "--rpc", chain.rpc_url, "--registry", chain.registry,
                        "--chain-id", str(chain.chain_id), "--trust-roots", str(roots)]) == 3


@pytest.fixture(autouse=True)
def _clear_responses() -> Iterator[None]:
    PUBLIC_RESPONSES.clear()
    yield
