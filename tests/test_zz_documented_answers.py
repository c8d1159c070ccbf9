"""Every status a route can give belongs in its OpenAPI entry.

tests/fixtures/statuses.py records every answer the service gives while the suite runs
(method, route, status, problem code) and, when the run ends, checks them all against the
document (in the xdist controller, over every worker's answers); a gap fails the run. This
module tests that check (tests/test_answers_check.py runs it end to end, across two
workers), sends a few refusals of its own, and checks the code table
(service/api/answers.py) against the status table and the document's routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from service.api import answers
from service.api.problems import PROBLEM_JSON, STATUS_BY_CODE
from service.state import build_state
from tests.fixtures.db import make_settings
from tests.fixtures.statuses import METHODS, RECORDED, undocumented
from tests.labkit import add_lab, client_for, make_app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    tmp: Path = tmp_path_factory.mktemp("answers")
    state = build_state(make_settings(tmp, f"sqlite:///{tmp / 'jz.db'}"), chain=None)
    application = make_app(state)
    yield application
    state.engine.dispose()


def _doc(app: FastAPI) -> dict[str, Any]:
    with TestClient(app) as client:
        resp = client.get("/openapi.json")
    assert resp.status_code == 200
    return resp.json()


def test_refusals_sent_here_are_documented(app: FastAPI) -> None:
    lab = add_lab(app.state.jz, 7)
    with TestClient(app, raise_server_exceptions=False) as raw:
        assert raw.get("/api/v1/reports/440300267K3QF9XA2MV").status_code == 401
        assert raw.get("/api/v1/public/reports/440300267K3QF9XA2MV").status_code == 404
    client = client_for(app, lab)
    resp = client.request("POST", "/api/v1/projects", content=b"{", headers={
        "Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["code"] == "malformed_json"
    resp = client.request("GET", "/api/v1/records/01M82ER52Y8N72FX8022AC8EFW")
    assert resp.status_code == 404 and resp.json()["code"] == "record_not_found"
    seen = {(m, p, s, c) for m, p, s, c in RECORDED}
    assert ("POST", "/api/v1/projects", 422, "malformed_json") in seen
    assert undocumented(_doc(app), RECORDED) == []


def test_an_undocumented_answer_is_caught(app: FastAPI) -> None:
    """The check itself: an answer a route does not list is reported, and so is a code its
    status does not list; a documented answer is not."""
    doc = _doc(app)
    assert undocumented(doc, {("GET", "/healthz", 418, "teapot"),
                              ("GET", "/healthz", 200, None)}) == ["GET /healthz: 418 teapot"]
    assert undocumented(doc, {("GET", "/api/v1/public/reports/{code}", 404, "no_such_code")}) == [
        "GET /api/v1/public/reports/{code}: 404 `no_such_code` not among its examples"]


def test_the_code_tables_agree(app: FastAPI) -> None:
    doc = _doc(app)
    operations = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item
                  if m in METHODS}
    stale = sorted(set(answers.ROUTE_PROBLEMS) - operations)
    assert stale == [], f"ROUTE_PROBLEMS names routes that do not exist: {stale}"
    listed = {c for codes in answers.ROUTE_PROBLEMS.values() for c in codes}
    listed |= set(answers.SIGNED + answers.PUBLIC + answers.VALIDATED + answers.JSON_BODY
                  + answers.IDEMPOTENT)
    assert sorted(listed - set(STATUS_BY_CODE)) == []
    assert sorted(listed - set(answers.MEANING)) == []
    assert sorted(set(answers.MEANING) - set(STATUS_BY_CODE)) == []


def test_each_error_entry_lists_its_codes_with_examples(app: FastAPI) -> None:
    doc = _doc(app)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for status, response in op["responses"].items():
                problem = response.get("content", {}).get(PROBLEM_JSON)
                if problem is None:
                    continue
                for name, example in problem["examples"].items():
                    value = example["value"]
                    assert value["code"] == name and value["status"] == int(status), (
                        method, path, status, name)
                    assert f"`{name}`" in response["description"]


def test_docs_errors_md_is_current() -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
    assert doc.read_text(encoding="utf-8") == answers.errors_markdown(), (
        "docs/errors.md is stale: run .venv/bin/python scripts/make_errors_doc.py"
    )
