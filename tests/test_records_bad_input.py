"""Bad input to the records, witness-key and upload endpoints: problem+json 4xx with a
stable code, never 5xx, and nothing recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import func, select

from service.client import JianzhengClient
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Record
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import (
    TINY_PDF,
    VALID_ID_NUMBER,
    WitnessSigner,
    ago,
    build_chain,
    contract_meta,
    data_body,
    multipart,
    project_body,
    sample_body,
    today_cst,
)

Case = tuple[str, Callable[[JianzhengClient], httpx.Response], int | None, str | None]


def _raw(client: JianzhengClient, path: str, body: bytes, ctype: str = "application/json",
         method: str = "POST", headers: dict[str, str] | None = None) -> httpx.Response:
    return client.request(method, path, content=body, content_type=ctype, headers=headers)


def _cases(chain: Any) -> list[Case]:
    sample = sample_body(chain.commission, "YP-NEW")
    td = data_body(chain, ago(60))
    cm = contract_meta(chain.project, today_cst())

    def post(path: str, body: Any) -> Callable[[JianzhengClient], httpx.Response]:
        return lambda c: c.post(path, json_body=body)

    def mp(path: str, meta: Any, file: bytes | None, mt: str = "application/pdf") -> Callable[
        [JianzhengClient], httpx.Response
    ]:
        body, ctype = multipart(meta, file, mt)
        return lambda c: _raw(c, path, body, ctype)

    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    return [
        ("malformed json", lambda c: _raw(c, "/api/v1/projects", b'{"name": '), 422,
         "malformed_json"),
        ("json array", lambda c: _raw(c, "/api/v1/projects", b"[]"), 422, "validation_error"),
        ("empty body", lambda c: _raw(c, "/api/v1/projects", b""), 422, "validation_error"),
        ("unknown field", post("/api/v1/projects", project_body(colour="red")), 422,
         "unknown_field"),
        ("nested unknown field",
         post("/api/v1/projects", project_body(construction_unit={"name": "x", "n": 1})), 422,
         "unknown_field"),
        ("missing field", post("/api/v1/projects", {"name": "x"}), 422, "validation_error"),
        ("wrong type", post("/api/v1/samples", {**sample, "quantity": "three"}), 422,
         "validation_error"),
        ("negative quantity", post("/api/v1/samples", {**sample, "quantity": -1}), 422,
         "validation_error"),
        ("bad sample code", post("/api/v1/samples", {**sample, "sample_code": "含 空格"}), 422,
         "validation_error"),
        ("naive datetime", post("/api/v1/samples", {**sample, "sampled_at": "2026-11-22T09:00"}),
         422, "validation_error"),
        ("bad parent id", post("/api/v1/samples", {**sample, "parents": ["../../etc"]}), 422,
         "validation_error"),
        ("too many parents", post("/api/v1/samples", {**sample, "parents": ["0" * 26] * 300}),
         422, "validation_error"),
        ("future finished_at", post("/api/v1/test-records", {**td, "finished_at": ago(-3600)}),
         422, "timestamp_in_future"),
        ("finished before started",
         post("/api/v1/test-records", {**td, "started_at": ago(10), "finished_at": ago(20)}),
         422, "validation_error"),
        ("raw data twice", post("/api/v1/test-records", {**td, "raw_data_file": "ab" * 32}), 422,
         "validation_error"),
        ("huge integer", post("/api/v1/test-records", {**td, "raw_data": {"n": 2**60}}), 422,
         "not_canonicalizable"),
        ("nesting too deep", post("/api/v1/test-records", {**td, "raw_data": deep}), 422,
         "not_canonicalizable"),
        ("lone surrogate",
         lambda c: _raw(c, "/api/v1/test-records",
                        json.dumps({**td, "tester": "\ud800"}).encode()), 422, None),
        ("oversized body",
         lambda c: _raw(c, "/api/v1/projects", b'{"name": "' + b"x" * (11 * 1024**2) + b'"}'),
         413, "body_too_large"),
        ("contract without file", mp("/api/v1/contracts", cm, None), 422, "file_required"),
        ("contract not a pdf", mp("/api/v1/contracts", cm, b"GIF89a..."), 422,
         "file_type_invalid"),
        ("contract signed in future", mp("/api/v1/contracts", {**cm, "signed_on": "2099-01-01"},
                                         TINY_PDF), 422, "date_in_future"),
        ("contract meta malformed", mp("/api/v1/contracts", '{"contract_no": ', TINY_PDF), 422,
         "malformed_json"),
        ("contract meta unknown field", mp("/api/v1/contracts", {**cm, "x": 1}, TINY_PDF), 422,
         "unknown_field"),
        ("media empty file", mp("/api/v1/media", {"kind": "image"}, b"", "image/png"), 422,
         "file_empty"),
        ("media bad media type", mp("/api/v1/media", {"kind": "image"}, b"x", "not a type"),
         422, "media_type_invalid"),
        ("media wrong content type",
         lambda c: _raw(c, "/api/v1/media", b"kind=image", "text/plain"), 415,
         "unsupported_media_type"),
        ("media garbage multipart",
         lambda c: _raw(c, "/api/v1/media", b"--x\r\nnonsense", "multipart/form-data; boundary=x"),
         None, None),
        ("media unknown upload", post("/api/v1/media", {"kind": "video",
                                                        "upload_id": "0" * 26}), 404,
         "upload_not_found"),
        ("bad id number", post("/api/v1/witness-keys", {
            "witness": {"name": "张三", "id_number": "110105194912310021"},
            "algorithm": "ed25519", "public_key": WitnessSigner.new().public_b64()}), 422,
         "id_number_invalid"),
        ("bad public key", post("/api/v1/witness-keys", {
            "witness": {"name": "张三", "id_number": VALID_ID_NUMBER},
            "algorithm": "ed25519", "public_key": "A" * 60}), 422, "witness_key_invalid"),
        ("key of another algorithm", post("/api/v1/witness-keys", {
            "witness": {"name": "张三", "id_number": VALID_ID_NUMBER},
            "algorithm": "ecdsa-p256", "public_key": WitnessSigner.new().public_b64()}), 422,
         "witness_key_invalid"),
        ("key registered twice", post("/api/v1/witness-keys", {
            "witness": {"name": "张三", "id_number": VALID_ID_NUMBER},
            "algorithm": "ed25519", "public_key": chain.witness_key.public_pem()}), 409,
         "witness_key_exists"),
        ("unknown record", lambda c: c.get("/api/v1/records/" + "Z" * 26), 404,
         "record_not_found"),
        ("overlong record id", lambda c: c.get("/api/v1/records/" + "Z" * 300), 404,
         "record_not_found"),
        ("upload zero length", post("/api/v1/uploads", {"length": 0, "media_type": "video/mp4"}),
         422, "validation_error"),
        ("upload bad media type", post("/api/v1/uploads", {"length": 5, "media_type": "v i"}),
         422, "media_type_invalid"),
        ("unknown upload head", lambda c: c.request("HEAD", "/api/v1/uploads/" + "0" * 26), 404,
         None),
        ("patch without offset",
         lambda c: _raw(c, "/api/v1/uploads/" + "0" * 26, b"abc",
                        "application/offset+octet-stream", "PATCH"), 400,
         "upload_offset_missing"),
        ("patch bad offset",
         lambda c: _raw(c, "/api/v1/uploads/" + "0" * 26, b"abc",
                        "application/offset+octet-stream", "PATCH", {"Upload-Offset": "-1"}),
         400, "upload_offset_invalid"),
        ("patch wrong content type",
         lambda c: _raw(c, "/api/v1/uploads/" + "0" * 26, b"abc", "application/json", "PATCH",
                        {"Upload-Offset": "0"}), 415, "unsupported_media_type"),
        ("patch unknown upload",
         lambda c: _raw(c, "/api/v1/uploads/" + "0" * 26, b"abc",
                        "application/offset+octet-stream", "PATCH", {"Upload-Offset": "0"}),
         404, "upload_not_found"),
        ("complete bad sha", post("/api/v1/uploads/" + "0" * 26 + "/complete",
                                  {"sha256": "xyz"}), 422, "validation_error"),
    ]


def test_bad_input_matrix(app_state: ServiceState) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 7)
    with client_for(app, lab) as client:
        chain = build_chain(client)
        with session_scope(app_state.sessions) as s:
            before = s.scalar(select(func.count()).select_from(Record))
        failures = []
        for name, call, status, code in _cases(chain):
            resp = call(client)
            got = (resp.status_code, resp.headers.get("content-type", ""))
            problem = resp.json() if resp.content and "json" in got[1] else {}
            ok = 400 <= resp.status_code < 500
            ok = ok and (status is None or resp.status_code == status)
            ok = ok and (resp.request.method == "HEAD" or got[1] == "application/problem+json")
            ok = ok and (code is None or problem.get("code") == code)
            ok = ok and (resp.request.method == "HEAD" or bool(problem.get("code")))
            if not ok:
                failures.append(f"{name}: {resp.status_code} {resp.text[:200]}")
        assert not failures, "\n".join(failures)
        with session_scope(app_state.sessions) as s:
            assert s.scalar(select(func.count()).select_from(Record)) == before
