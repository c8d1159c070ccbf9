"""`PUT/GET /api/v1/reports/{code}/pdf`: sealing through the real HTTP API."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from service.state import ServiceState, build_state
from service.storage.models import Record, RecordFile, RecordParent, ReportCode
from tests.fixtures.db import make_settings
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import build_chain, issue_report, make_pdf


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[dict[str, Any]]:
    settings = make_settings(
        tmp_path,
        sqlite_url,
        public={"rate_limit_per_minute": 0},
        security={"max_pdf_bytes": 400_000},
    )
    state = build_state(settings, chain=None)
    app = make_app(state)
    lab = add_lab(state, 1)
    other = add_lab(state, 2)
    yield {
        "state": state,
        "app": app,
        "lab": lab,
        "client": client_for(app, lab),
        "other": client_for(app, other),
    }
    state.engine.dispose()


def test_seal_stores_both_files_and_finishes_the_code(world: dict[str, Any]) -> None:
    state: ServiceState = world["state"]
    built = issue_report(state, world["client"], world["lab"].institution, "S1")
    out = built.sealed
    assert set(out) == {"record_id", "sha256", "original_sha256"}
    assert out["original_sha256"] == hashlib.sha256(built.pdf).hexdigest()
    sealed = state.blobs.get(out["sha256"])
    assert hashlib.sha256(sealed).hexdigest() == out["sha256"]
    assert sealed.startswith(built.pdf) and len(sealed) > len(built.pdf)
    assert state.blobs.get(out["original_sha256"]) == built.pdf

    r = world["client"].get(f"/api/v1/reports/{built.code}/pdf")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.content == sealed

    with state.sessions() as s:
        rec = s.get(Record, out["record_id"])
        assert rec is not None and rec.type == "report" and rec.code == built.code
        files = {
            f.role: f.sha256
            for f in s.scalars(select(RecordFile).where(RecordFile.record_id == rec.id))
        }
        assert files == {"original_pdf": out["original_sha256"], "signed_pdf": out["sha256"]}
        parents = [p.parent_id for p in s.scalars(
            select(RecordParent).where(RecordParent.child_id == rec.id)
        )]
        assert parents == [built.record_ids["report_metadata"]]
        row = s.get(ReportCode, built.code)
        assert row is not None
        assert row.pdf_record_id == rec.id and row.sealed_at is not None


def test_any_code_form_is_accepted(world: dict[str, Any]) -> None:
    state: ServiceState = world["state"]
    built = issue_report(state, world["client"], world["lab"].institution, "S2")
    spaced = "-".join(built.code[i : i + 4] for i in range(0, len(built.code), 4)).lower()
    r = world["client"].get(f"/api/v1/reports/{spaced}/pdf")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == built.sealed["sha256"]


def test_same_pdf_again_answers_the_first_result_and_another_pdf_is_refused(
    world: dict[str, Any],
) -> None:
    state: ServiceState = world["state"]
    built = issue_report(state, world["client"], world["lab"].institution, "S3")
    path = f"/api/v1/reports/{built.code}/pdf"
    again = world["client"].put(path, content=built.pdf, content_type="application/pdf")
    assert again.status_code == 200 and again.json() == built.sealed
    other = world["client"].put(path, content=make_pdf(1, "另一份"), content_type="application/pdf")
    assert other.status_code == 409
    assert other.json()["code"] == "already_sealed"


def test_bad_inputs_get_clear_4xx_and_the_service_stays_up(world: dict[str, Any]) -> None:
    state: ServiceState = world["state"]
    client = world["client"]
    built = issue_report(state, client, world["lab"].institution, "S4", seal=False)
    path = f"/api/v1/reports/{built.code}/pdf"

    r = client.put(path, content=make_pdf(1), content_type="application/json")
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = client.put(path, content=b"hello, not a pdf at all", content_type="application/pdf")
    assert r.status_code == 422 and r.json()["code"].startswith("pdf_")
    r = client.put(path, content=b"", content_type="application/pdf")
    assert r.status_code == 422 and r.json()["code"] == "pdf_empty"
    damaged = make_pdf(1).replace(b"xref", b"xxxx")
    damaged = damaged[: len(damaged) // 2]
    r = client.put(path, content=damaged, content_type="application/pdf")
    assert r.status_code == 422 and r.json()["code"].startswith("pdf_")
    big = make_pdf(1) + b"%" + b"x" * 500_000
    r = client.put(path, content=big, content_type="application/pdf")
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")

    r = client.get(path)
    assert r.status_code == 404 and r.json()["code"] == "pdf_not_found"
    assert client.get("/healthz").status_code == 200
    # and the code can still be sealed afterwards
    r = client.put(path, content=make_pdf(1), content_type="application/pdf")
    assert r.status_code == 200, r.text


def test_metadata_comes_first(world: dict[str, Any]) -> None:
    state: ServiceState = world["state"]
    ids = build_chain(state, world["lab"].institution, "S5")
    r = world["client"].issue_code("BG-2026-S5", ids["project"])
    code = r.json()["code"]
    r = world["client"].put(
        f"/api/v1/reports/{code}/pdf", content=make_pdf(1), content_type="application/pdf"
    )
    assert r.status_code == 409 and r.json()["code"] == "report_metadata_missing"


def test_a_lab_touches_only_its_own_codes(world: dict[str, Any]) -> None:
    state: ServiceState = world["state"]
    built = issue_report(state, world["client"], world["lab"].institution, "S6")
    path = f"/api/v1/reports/{built.code}/pdf"
    r = world["other"].get(path)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = world["other"].put(path, content=make_pdf(1), content_type="application/pdf")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    raw = TestClient(world["app"])
    r = raw.get(path)
    assert r.status_code == 401 and r.json()["code"].startswith("auth_")
    r = world["client"].get("/api/v1/reports/440300260000000000A/pdf")
    assert r.status_code == 404 and r.json()["code"] == "unknown_code"


def test_get_refuses_a_swapped_file(world: dict[str, Any]) -> None:
    state: ServiceState = world["state"]
    built = issue_report(state, world["client"], world["lab"].institution, "S7")
    blob = state.blobs.path(built.sealed["sha256"])
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    r = world["client"].get(f"/api/v1/reports/{built.code}/pdf")
    assert r.status_code == 500 and r.json()["code"] == "file_corrupt"
