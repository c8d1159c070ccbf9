"""§5.2: `Idempotency-Key` works on every signed POST/PUT, not only on the ones a test
happens to exercise; and on the two late additions, behaviourally."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import ValidationError

from service.api.idempotency import dump_answer
from service.api.reports import CodeIssued
from service.domain import reports as reports_domain
from service.state import ServiceState
from tests.labkit import (
    add_agency,
    add_auditor,
    add_lab,
    all_routes,
    client_for,
    make_app,
    seed_record,
)
from tests.recordkit import WitnessSigner, patch_upload, start_upload


def test_every_signed_post_and_put_takes_an_idempotency_key(app_state: ServiceState) -> None:
    """Each write route of the OpenAPI document, called with a malformed key, must refuse
    it (422 `invalid_idempotency_key`): a route that ignores the header answers otherwise."""
    app = make_app(app_state)
    lab, auditor = add_lab(app_state, 52), add_auditor(app_state)
    ignored = []
    checked = 0
    agency = add_agency(app_state)
    with client_for(app, lab) as c, client_for(app, auditor) as a, client_for(app, agency) as g:
        for path, ops in app.openapi()["paths"].items():
            if not path.startswith("/api/v1/") or path.startswith("/api/v1/public/"):
                continue  # public routes are anonymous: no caller to scope a key to
            for method in ("post", "put"):
                if method not in ops:
                    continue
                checked += 1
                client = a if path.startswith("/api/v1/audit/") else c
                client = g if path.startswith("/api/v1/agency/") else client
                url = re.sub(r"\{[^}]+\}", "01TESTID0000000000000000AA", path)
                resp = client.request(
                    method.upper(), url, json_body={}, headers={"Idempotency-Key": "not valid"}
                )
                if (resp.status_code, _code(resp)) != (422, "invalid_idempotency_key"):
                    ignored.append(f"{method.upper()} {path} -> {resp.status_code} {_code(resp)}")
    assert checked >= 15, checked  # the lab and auditor write routes are all seen
    assert ignored == []


def _code(resp: httpx.Response) -> str | None:
    try:
        code = resp.json().get("code")
    except ValueError:
        return None
    return code if isinstance(code, str) else None


def test_upload_completion_and_witness_key_revocation_replay(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 51)
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    with client_for(app, lab) as c:
        uid = start_upload(c, len(data))
        assert patch_upload(c, uid, 0, data).status_code == 204
        path = f"/api/v1/uploads/{uid}/complete"
        first = c.post(path, json_body={"sha256": sha}, headers={"Idempotency-Key": "done-1"})
        assert first.status_code == 200, first.text
        again = c.post(path, json_body={"sha256": sha}, headers={"Idempotency-Key": "done-1"})
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers.get("idempotent-replayed") == "true"
        other = c.post(
            path, json_body={"sha256": "0" * 64}, headers={"Idempotency-Key": "done-1"}
        )
        assert other.status_code == 422 and other.json()["code"] == "idempotency_mismatch"

        key_id = WitnessSigner.new().register(c)
        revoke = f"/api/v1/witness-keys/{key_id}/revocation"
        r1 = c.post(revoke, headers={"Idempotency-Key": "rev-1"})
        r2 = c.post(revoke, headers={"Idempotency-Key": "rev-1"})
        assert r1.status_code == 200 and r1.json()["revoked"] is True
        assert r2.status_code == 200 and r2.json() == r1.json()
        assert r2.headers.get("idempotent-replayed") == "true"



NO_JSON_MODEL = (
    "/v/{code}", "/v/{code}/{payload}", "/metrics", "/ca/root.crl", "/ca/roots.pem",
    "/offline/", "/images/{sha256}", "/raw/{record_id}", "/pdf", "/tsa",
    "['HEAD'] /api/v1/uploads/{upload_id}", "['PATCH'] /api/v1/uploads/{upload_id}",
)


def test_every_json_route_declares_the_model_its_answers_are_shaped_by(
    app_state: ServiceState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10: every route has a response model, and the answers routes build themselves
    (idempotent writes, the code fast path) go through it as FastAPI's own serialisation
    does: validated, only the model's fields, nothing the payload left out added; the
    replay is the same bytes."""
    app = make_app(app_state)
    bare = []
    for r in all_routes(app):
        if not isinstance(r, APIRoute) or not r.include_in_schema or r.response_model:
            continue
        answers = {k: v for k, v in r.responses.items() if str(k).startswith("2")}
        json_2xx = [k for k, v in answers.items() if "application/json" in v.get("content", {})
                    or not v.get("content")]
        if any(answers[k].get("model") is None for k in json_2xx) or not answers:
            bare.append(f"{sorted(r.methods)} {r.path}")
    # the routes that answer no JSON, and the one that hands out a record's raw bytes
    bare = [b for b in bare if not b.endswith(NO_JSON_MODEL)]
    assert bare == []
    issue = next(
        r for r in all_routes(app)
        if isinstance(r, APIRoute) and r.path == "/api/v1/report-codes" and "POST" in r.methods
    )
    assert issue.response_model is CodeIssued

    real = reports_domain.issue_code

    def leaky(*args: Any, **kwargs: Any) -> Any:
        return {**real(*args, **kwargs), "internal_note": "not for the wire"}

    monkeypatch.setattr(reports_domain, "issue_code", leaky)
    lab = add_lab(app_state, 53)
    project = seed_record(app_state, lab.institution or "", "project")
    body = {"report_no": "BG-SHAPE-1", "project_id": project}
    with client_for(app, lab) as c:
        first = c.post("/api/v1/report-codes", json_body=body, headers={"Idempotency-Key": "k1"})
        again = c.post("/api/v1/report-codes", json_body=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201, first.text
    assert set(first.json()) == set(CodeIssued.model_fields)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == first.content

    with pytest.raises(ValidationError):
        dump_answer(CodeIssued, {"code": "JZ-1"})  # a payload short of its model is a bug
