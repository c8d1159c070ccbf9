"""Request signing with SM3 (INTERFACE §7.7, `JZ1-HMAC-SM3`), key facts and agency accounts.

- the vectors (tests/vectors/signing_sm3.json, written by scripts/make_signing_vectors.py
  with the `cryptography` package's SM3) are what service.client produces and what the
  server accepts;
- every `auth_*` refusal holds for an SM3 key, and a SHA-256 signature is not one;
- `jianzheng key issue --algorithm hmac-sm3`, key expiry, `jianzheng agency add`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from fastapi import APIRouter, FastAPI
from starlette.testclient import TestClient

from service.api.auth import CallerDep, SignedRoute
from service.api.problems import install_problem_handlers
from service.cli import main as cli_main
from service.client import (
    JianzhengClient,
    body_hash,
    query_ambiguity,
    sign_request,
    string_to_sign,
)
from service.clock import utc_now
from service.domain.accounts import SecretBox, add_agency, issue_key, revoke_key
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import ApiKey
from tests.fixtures.clock import ManualClock
from tests.labkit import add_lab, make_app

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "signing_sm3.json").read_text("utf-8")
)
CASES = VECTORS["vectors"]
IDS = [c["description"] for c in CASES]


def _sm3(data: bytes) -> str:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex()


def test_sm3_known_answers() -> None:
    # GB/T 32905-2016 Appendix A, through the same function the client signs bodies with
    assert body_hash(b"abc", "hmac-sm3") == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert body_hash(b"abcd" * 16, "hmac-sm3") == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


@pytest.mark.parametrize("v", CASES, ids=IDS)
def test_client_reproduces_sm3_vector(v: dict[str, str]) -> None:
    body = v["body"].encode("utf-8")
    assert _sm3(body) == v["body_sm3"] == body_hash(body, "hmac-sm3")
    text = string_to_sign(v["method"], v["path"], v["query"], v["timestamp"], v["nonce"],
                          v["body_sm3"], "hmac-sm3")
    assert text == v["string_to_sign"] and text.startswith("JZ1-HMAC-SM3\n")
    mac = hmac.HMAC(VECTORS["secret"].encode("utf-8"), hashes.SM3())
    mac.update(text.encode("utf-8"))
    assert mac.finalize().hex() == v["signature"]
    headers = sign_request(v["method"], v["path"], v["query"], body, VECTORS["key_id"],
                           VECTORS["secret"], v["timestamp"], v["nonce"], "hmac-sm3")
    assert headers["X-JZ-Signature"] == v["signature"]


def _install_sm3_vector_key(state: ServiceState) -> str:
    key_id, secret = VECTORS["key_id"], VECTORS["secret"]
    lab = add_lab(state, 141)
    with session_scope(state.sessions) as s:
        s.add(ApiKey(
            key_id=key_id, role="lab", institution=lab.institution, auditor_id=None,
            secret_ciphertext=SecretBox.from_settings(state.settings).seal(key_id, secret),
            created_at=utc_now(), algorithm="hmac-sm3",
        ))
    assert lab.institution
    return lab.institution


def _vector_request(http: TestClient, v: dict[str, str], **header_over: str) -> Any:
    headers = {"X-JZ-Key": VECTORS["key_id"], "X-JZ-Timestamp": v["timestamp"],
               "X-JZ-Nonce": v["nonce"], "X-JZ-Signature": v["signature"], **header_over}
    url = v["path"] + ("?" + v["query"] if v["query"] else "")
    return http.request(v["method"], url, content=v["body"].encode("utf-8"), headers=headers)


def test_server_checks_sm3_vectors_and_every_refusal(app_state: ServiceState) -> None:
    _install_sm3_vector_key(app_state)
    app = FastAPI()
    app.state.jz = app_state
    install_problem_handlers(app)
    router = APIRouter(route_class=SignedRoute)

    @router.api_route("/api/v1/{rest:path}", methods=["GET", "POST", "PUT"])
    def echo(rest: str, caller: CallerDep) -> dict[str, str]:
        return {"key": caller.key_id}

    app.include_router(router)
    http = TestClient(app)
    accepted = 0
    for v in CASES:
        app_state.clock = ManualClock(float(v["timestamp"]))
        r = _vector_request(http, v)
        if query_ambiguity(v["query"]) is not None:
            assert r.status_code == 400 and r.json()["code"] == "query_ambiguous"
            continue
        assert r.status_code == 200, (v["description"], r.text)
        accepted += 1
        # the same request again: replayed
        again = _vector_request(http, v)
        assert again.status_code == 401 and again.json()["code"] == "auth_replayed"
    assert accepted >= 10
    v = CASES[0]
    app_state.clock = ManualClock(float(v["timestamp"]))

    def refused(code: str, **over: str) -> None:
        r = _vector_request(http, v, **over)
        assert r.status_code == 401 and r.json()["code"] == code, r.text

    refused("auth_missing", **{"X-JZ-Nonce": ""})
    refused("auth_bad_signature", **{"X-JZ-Nonce": "another_nonce_0001"})
    # the SHA-256 signature of the same request is not a signature of an SM3 key
    sha = sign_request(v["method"], v["path"], v["query"], b"", VECTORS["key_id"],
                       VECTORS["secret"], v["timestamp"], "sha256_nonce_00001")
    refused("auth_bad_signature", **sha)
    app_state.clock = ManualClock(float(v["timestamp"]) + 3600)
    refused("auth_expired", **{"X-JZ-Nonce": "late_nonce_00000001"})
    app_state.clock = ManualClock(float(v["timestamp"]))
    refused("auth_unknown_key", **{"X-JZ-Key": "jzl_" + "0" * 20})
    with session_scope(app_state.sessions) as s:
        revoke_key(s, VECTORS["key_id"])
    app_state.keys.clear()
    refused("auth_unknown_key", **{"X-JZ-Nonce": "after_revocation_01"})


def test_an_sm3_key_works_end_to_end_and_can_expire(app_state: ServiceState) -> None:
    lab = add_lab(app_state, 142)
    with session_scope(app_state.sessions) as s:
        key = issue_key(s, app_state.settings, institution=lab.institution,
                        algorithm="hmac-sm3")
    assert key.as_json()["algorithm"] == "hmac-sm3"
    app = make_app(app_state)
    http = TestClient(app, base_url="http://testserver")
    sm3 = JianzhengClient("http://testserver", key.key_id, key.secret, http=http,
                          algorithm="hmac-sm3")
    project = {"name": "某项目", "location": "深圳", "construction_unit": {"name": "某建设单位"}}
    assert sm3.post("/api/v1/projects", json_body=project).status_code == 201
    wrong = JianzhengClient("http://testserver", key.key_id, key.secret, http=http)
    r = wrong.post("/api/v1/projects", json_body=project)
    assert r.status_code == 401 and r.json()["code"] == "auth_bad_signature"
    # a key with an expiry signs nothing after it
    with session_scope(app_state.sessions) as s:
        short = issue_key(s, app_state.settings, institution=lab.institution,
                          expires_at=utc_now().replace(microsecond=0) + _seconds(60))
    client = JianzhengClient("http://testserver", short.key_id, short.secret, http=http)
    assert client.get("/api/v1/flags").status_code == 200
    app_state.clock = ManualClock(time.time() + 120)
    later = JianzhengClient("http://testserver", short.key_id, short.secret, http=http,
                            clock=lambda: time.time() + 120)
    r = later.get("/api/v1/flags")
    assert r.status_code == 401 and r.json()["code"] == "auth_unknown_key"
    assert "expired" in r.json()["detail"]


def _seconds(n: int) -> Any:
    from datetime import timedelta

    return timedelta(seconds=n)


def test_cli_key_issue_with_sm3_and_agency_add(
    cli_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["institution", "add", "--uscc", "91440300MA5FQ2K3X8", "--region",
                     "440300", "--name", "深圳市某检测有限公司"]) == 0
    capsys.readouterr()
    assert cli_main(["key", "issue", "--institution", "91440300MA5FQ2K3X8", "--algorithm",
                     "hmac-sm3"]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert issued["algorithm"] == "hmac-sm3" and issued["key_id"].startswith("jzl_")
    assert {"key_id", "secret", "algorithm"} <= set(issued)
    assert cli_main(["agency", "add", "--name", "南山区建设工程质量监督站", "--region",
                     "440305"]) == 0
    agency = json.loads(capsys.readouterr().out)
    assert {"account", "key_id", "secret"} <= set(agency)
    assert agency["key_id"].startswith("jzg_") and agency["region"] == "440305"
    assert cli_main(["agency", "add", "--name", "x", "--region", "12"]) == 1


def test_an_agency_reads_its_region_as_auditors_do(app_state: ServiceState) -> None:
    inside = add_lab(app_state, 143, region="440305")
    outside = add_lab(app_state, 144, region="110101")
    with session_scope(app_state.sessions) as s:
        agency = add_agency(s, app_state.settings, name="南山区质监站", region="440305")
    app = make_app(app_state)
    http = TestClient(app, base_url="http://testserver")
    client = JianzhengClient("http://testserver", agency["key_id"], agency["secret"], http=http)
    assert client.get("/api/v1/audit/flags").status_code == 200
    ok = client.get("/api/v1/audit/flags", query={"institution": inside.institution or ""})
    assert ok.status_code == 200
    no = client.get("/api/v1/audit/flags", query={"institution": outside.institution or ""})
    assert no.status_code == 403 and no.json()["code"] == "forbidden"
    # it is not a lab
    lab_route = client.get("/api/v1/flags")
    assert lab_route.status_code == 403
