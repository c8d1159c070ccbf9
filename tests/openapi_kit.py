"""One real run of the lab, auditor and public API for the OpenAPI examples.

`capture(tmp)` drives an in-process service (SQLite, no chain) through the flow the
examples describe, signed like any client, and returns every JSON answer it got, keyed as
in service/api/openapi_examples.json ("METHOD /path/template status"), with a scenario name
where the file names its examples. The request bodies of the file (`requests`) are what the
run sends, with the world's ids replaced by the run's: so they are sendable as written.

`refresh(stored, live)` is the stored example updated from a live answer: the structure,
the keys and every value come from the live answer except those that differ only by an id,
hash, code, time or date (`varying`), which keep the stored world's value, so the examples
stay one consistent world. scripts/capture_openapi_examples.py writes the file with it;
tests/test_openapi_examples.py checks that refreshing changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from service.api.openapi import EXAMPLES_FILE
from service.client import JianzhengClient
from service.state import build_state
from tests.fixtures.db import make_settings
from tests.labkit import add_auditor, add_lab, client_for, make_app
from tests.public_kit import make_pdf
from tests.recordkit import ago, build_chain, today_cst

#: Tokens that differ from run to run (ids, hashes, codes, times); compared as placeholders.
_VARYING = [
    re.compile(r"0x[0-9a-fA-F]{40,64}"),
    re.compile(r"[0-9a-f]{64}"),
    re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"),
    re.compile(r"\d{4}-\d\d-\d\d"),
    re.compile(r"[0-9A-HJKMNP-TV-Z]{26}"),
    re.compile(r"\d{6}-\d{2}-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]"),
    re.compile(r"\d{8}[0-9A-Z]{11}"),
    re.compile(r"9\d[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}"),  # USCC
    re.compile(r"YP\d{13}"),
    re.compile(r"[A-Z]{2}-\d{4}-\d{6}"),  # report numbers (the world's series starts at 121)
    re.compile(r"jz[a-z]_[A-Za-z0-9_-]+"),
    re.compile(r"[A-Za-z0-9+/]{40,}={0,2}"),  # base64 (keys, signatures)
]


def _shape(text: str) -> str:
    for pattern in _VARYING:
        text = pattern.sub("\x00", text)
    return text


def refresh(stored: Any, live: Any) -> Any:
    """`stored` updated from `live`, keeping the stored world's varying values."""
    if isinstance(live, dict) and isinstance(stored, dict):
        return {k: refresh(stored.get(k), v) for k, v in live.items()}
    if isinstance(live, list) and isinstance(stored, list):
        if stored:
            live = live[: len(stored)]  # an example is trimmed to what it shows
        return [refresh(stored[i] if i < len(stored) else None, v) for i, v in enumerate(live)]
    if isinstance(live, str) and isinstance(stored, str) and _shape(live) == _shape(stored):
        return stored
    if (
        isinstance(live, int | float) and isinstance(stored, int | float)
        and not isinstance(live, bool) and not isinstance(stored, bool)
    ):
        return stored  # counts, offsets, block numbers, Unix times: the world's
    return live


@dataclass
class Run:
    app: Any
    answers: dict[str, dict[str | None, Any]] = field(default_factory=dict)
    sent: list[tuple[str, int]] = field(default_factory=list)

    def got(self, resp: httpx.Response, name: str | None = None, status: int = 0) -> Any:
        """Keep a JSON answer; fail unless it has the status expected (2xx by default)."""
        ok = resp.status_code == status if status else 200 <= resp.status_code < 300
        assert ok, f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text}"
        key = f"{resp.request.method} {self.template(resp.request)} {resp.status_code}"
        body = resp.json()
        self.answers.setdefault(key, {}).setdefault(name, body)  # the first of its kind
        return body

    def template(self, request: httpx.Request) -> str:
        """The document's path template the request's path matches (literal parts first)."""
        path = request.url.path
        templates = sorted(self.app.openapi()["paths"], key=lambda t: t.count("{"))
        for template in templates:
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            if re.fullmatch(pattern, path):
                return str(template)
        raise AssertionError(f"no route for {path}")


def _substitute(value: Any, ids: dict[str, str]) -> Any:
    text = json.dumps(value, ensure_ascii=False)
    for world, live in ids.items():
        text = text.replace(world, live)
    return json.loads(text)


def capture(tmp: Path) -> Run:
    examples = json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))
    world = examples["world"]
    settings = make_settings(
        tmp, f"sqlite:///{tmp / 'jz.db'}", public={"base_url": world["base_url"]}
    )
    state = build_state(settings, chain=None)
    app = make_app(state)
    run = Run(app)
    lab_account = add_lab(state, 1)
    lab = client_for(app, lab_account)
    auditor = client_for(app, add_auditor(state))
    public = TestClient(app, base_url="http://testserver", raise_server_exceptions=False)
    try:
        _flow(run, lab, auditor, public, lab_account.institution or "", examples, world)
    finally:
        for c in (lab, auditor):
            c.close()
        public.close()
        state.engine.dispose()
    return run


def _flow(
    run: Run, lab: JianzhengClient, auditor: JianzhengClient, public: TestClient,
    institution: str, examples: dict[str, Any], world: dict[str, str],
) -> None:
    got = run.got
    requests = examples["requests"]
    # The traceable chain (the records' own answers are kept through the client's hook).
    hook = _Hook(run)
    lab.http.event_hooks["response"].append(hook)
    chain = build_chain(
        lab, sample_code="YP2026112200017", finished_at=ago(60), signed_on=today_cst(30)
    )
    lab.http.event_hooks["response"].remove(hook)
    got(lab.get(f"/api/v1/records/{chain.test_record}"), "test_record")
    got(lab.get(f"/api/v1/records/{chain.contract}"), "late_contract")
    key_id = chain.witness_key.key_id
    got(lab.get(f"/api/v1/witness-keys/{key_id}"))

    # A genuine report: code, metadata, sealed PDF.
    code = got(lab.issue_code("BG-2026-000123", chain.project))["code"]
    got(lab.put(f"/api/v1/reports/{code}", json_body={
        "conclusion": "pass", "issued_on": today_cst(), "approver": "王五",
        "parents": [chain.sample, chain.test_record],
    }), "pass")
    pdf_ids = {world["code"]: code}
    sealed = lab.put(f"/api/v1/reports/{code}/pdf", content=make_pdf(2, "检测报告 000123"),
                     content_type="application/pdf")
    got(sealed)
    got(lab.get(f"/api/v1/reports/{code}"), "sealed")
    got(lab.get(f"/api/v1/records/{chain.test_record}/proof"), status=202)
    got(auditor.get(f"/api/v1/audit/reports/{code}/bundle"), status=202)

    # A failed report, superseded by a corrected one (the file's revocation request).
    failed = got(lab.issue_code("BG-2026-000124", chain.project))["code"]
    got(lab.put(f"/api/v1/reports/{failed}", json_body={
        "conclusion": "fail", "issued_on": today_cst(), "approver": "张三",
        "parents": [chain.sample, chain.test_record],
    }), "fail")
    successor = got(lab.issue_code("BG-2026-000126", chain.project))["code"]
    supersede = requests["POST /api/v1/reports/{code}/revocation application/json"]["supersede"]
    body = _substitute(supersede["value"], {"4403002622DOAHF7M5R": successor, **pdf_ids})
    got(lab.post(f"/api/v1/reports/{failed}/revocation", json_body=body))
    run.sent.append(("POST /api/v1/reports/{code}/revocation supersede", 201))
    got(lab.get(f"/api/v1/reports/{failed}"), "superseded")
    other = lab.issue_code("BG-2026-000127", chain.project).json()["code"]
    revoke = requests["POST /api/v1/reports/{code}/revocation application/json"]["revoke"]
    resp = lab.post(f"/api/v1/reports/{other}/revocation", json_body=revoke["value"])
    assert resp.status_code == 201, resp.text
    run.sent.append(("POST /api/v1/reports/{code}/revocation revoke", 201))
    got(lab.post("/api/v1/numbering/voids", json_body={
        "report_no": "BG-2026-000125", "reason": "作废：编号跳号"
    }))

    # Lists (the lab's own and the auditor's).
    for path in ("flags", "warnings", "overdue", "nonconforming"):
        got(lab.get(f"/api/v1/{path}"))
        got(auditor.get(f"/api/v1/audit/{path}"))
    numbering = got(auditor.get("/api/v1/audit/numbering",
                                query={"institution": institution, "year": today_cst()[:4]}))
    # Codes issued in the same second are listed in code order, random from run to run:
    # compare in report-number order.
    numbering["issued"].sort(key=lambda row: row["report_no"])

    # A resumable upload.
    data = bytes(range(256)) * 4
    upload = got(lab.post("/api/v1/uploads", json_body={
        "length": len(data[:1000]), "media_type": "video/mp4"
    }))
    uid = upload["upload_id"]
    resp = lab.request("PATCH", f"/api/v1/uploads/{uid}", content=data[:600],
                       content_type="application/offset+octet-stream",
                       headers={"Upload-Offset": "0"})
    assert resp.status_code == 204, resp.text
    got(lab.get(f"/api/v1/uploads/{uid}"))
    resp = lab.request("PATCH", f"/api/v1/uploads/{uid}", content=data[600:1000],
                       content_type="application/offset+octet-stream",
                       headers={"Upload-Offset": "600"})
    assert resp.status_code == 204, resp.text
    digest = hashlib.sha256(data[:1000]).hexdigest()
    got(lab.post(f"/api/v1/uploads/{uid}/complete", json_body={"sha256": digest}))

    got(lab.post(f"/api/v1/witness-keys/{key_id}/revocation"))
    # (GET /healthz is kept as captured with a chain: this run has none.)


class _Hook:
    """Keeps the answers of the records build_chain writes."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __call__(self, resp: httpx.Response) -> None:
        resp.read()
        if resp.status_code == 201 and resp.request.method == "POST":
            self.run.got(resp)


def refreshed(examples: dict[str, Any], run: Run) -> tuple[dict[str, Any], list[str]]:
    """The examples file with every entry the run reached refreshed, and those not reached."""
    out = json.loads(json.dumps(examples))
    missed = []
    for key, entry in out["responses"].items():
        live = run.answers.get(key)
        if live is None:
            missed.append(key)
            continue
        if "example" in entry and None in live:
            new = refresh(entry["example"], live[None])
            if new == [] and entry["example"]:
                missed.append(key)  # the run produced no such row: keep the captured one
            else:
                entry["example"] = new
        for name, example in entry.get("examples", {}).items():
            if name in live:
                example["value"] = refresh(example["value"], live[name])
            else:
                missed.append(f"{key} {name}")
    return out, missed
