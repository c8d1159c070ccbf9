"""Helpers for console tests: accounts with password and TOTP, a signed-in HTTP client, and
a seeded dataset of two regions (Shenzhen 440300 with two labs, Beijing 110000 with one)
whose counts the tests know."""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.testclient import TestClient

from service.domain import accounts
from service.domain.console import auth
from service.state import ServiceState
from service.storage.db import session_scope
from tests.labkit import Account, add_lab, client_for
from tests.public_kit import make_pdf
from tests.recordkit import ago, build_chain, created, data_body, today_cst

PASSWORD = "正确的马电池订书钉-2026"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Person:
    account_id: str
    login: str
    password: str
    secret: bytes
    key: Account
    region: str | None
    used_steps: set[int] = field(default_factory=set)

    def code(self) -> str:
        """A TOTP code for a time step this account has not used yet (the service accepts
        the current step and one either side, each once). Never the previous step: on a
        loaded machine the code may reach the service a step boundary later, when the
        previous step has fallen out of the window; the current and the next step stay
        good for at least one whole step."""
        while True:
            current = int(time.time() // auth.TOTP_STEP_S)
            for step in (current, current + 1):
                if step not in self.used_steps and all(step > s for s in self.used_steps):
                    self.used_steps.add(step)
                    return auth.hotp(self.secret, step)
            time.sleep(1)


def add_person(state: ServiceState, name: str, region: str | None, *, kind: str,
               login: str) -> Person:
    with session_scope(state.sessions) as s:
        if kind == "agency":
            assert region is not None
            out = accounts.add_agency(s, state.settings, name=name, region=region)
            account_id = out["account"]
        else:
            out = accounts.add_auditor(s, state.settings, name=name, region=region)
            account_id = out["auditor"]
        creds = auth.set_credentials(s, state.settings, account_id=account_id, login=login,
                                     password=PASSWORD)
    key = Account(out["key_id"], out["secret"], auditor_id=account_id)
    return Person(account_id, login, PASSWORD, base64.b32decode(creds["totp_secret"]), key,
                  region)


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no csrf field on the page"
    return m.group(1)


def sign_in(http: httpx.Client | TestClient, person: Person, *, code: str | None = None,
            password: str | None = None) -> httpx.Response:
    page = http.get("/console/login")
    assert page.status_code == 200
    if code is None:  # a wrong password spends no code (the service keeps only good ones)
        code = "000000" if password is not None else person.code()
    return http.post("/console/login", data={
        "login": person.login, "password": password or person.password,
        "totp": code, "csrf": csrf_of(page.text), "next": "/console/"},
        follow_redirects=False)


def signed_in(app: FastAPI, person: Person) -> TestClient:
    http = TestClient(app, base_url="http://testserver", raise_server_exceptions=True)
    r = sign_in(http, person)
    assert r.status_code == 303, r.text
    return http


@dataclass
class Seeded:
    #: code -> (institution, conclusion, test item, region)
    reports: dict[str, tuple[str, str, str, str]]
    labs: dict[str, Account]
    sealed: str
    report_nos: dict[str, str]


#: (lab key, report no., conclusion, test item, days ago)
PLAN: tuple[tuple[str, str, str, str, int], ...] = (
    ("sz1", "SZ1-2026-0001", "pass", "混凝土抗压强度", 0),
    ("sz1", "SZ1-2026-0002", "pass", "混凝土抗压强度", 1),
    ("sz1", "SZ1-2026-0003", "fail", "钢筋拉伸", 1),
    ("sz1", "SZ1-2026-0005", "pass", "钢筋拉伸", 2),  # 0004 is missing: a numbering gap
    ("sz2", "SZ2-2026-0001", "fail", "混凝土抗压强度", 0),
    ("sz2", "SZ2-2026-0002", "pass", "混凝土抗压强度", 3),
    ("bj", "BJ-2026-0001", "fail", "钢筋拉伸", 0),
    ("bj", "BJ-2026-0002", "fail", "钢筋拉伸", 0),
    ("bj", "BJ-2026-0003", "pass", "混凝土抗压强度", 0),
)
REGION_OF = {"sz1": "440305", "sz2": "440304", "bj": "110105"}


def seed(state: ServiceState, app: FastAPI) -> Seeded:
    labs = {"sz1": add_lab(state, 301, "440305"), "sz2": add_lab(state, 302, "440304"),
            "bj": add_lab(state, 303, "110105")}
    items: dict[str, dict[str, str]] = {}
    chains = {}
    reports: dict[str, tuple[str, str, str, str]] = {}
    report_nos: dict[str, str] = {}
    sealed = ""
    for key, lab in labs.items():
        with client_for(app, lab) as c:
            chain = build_chain(c, sample_code=f"YP-CONSOLE-{key}",
                                project_fields={"name": f"{key} 综合楼工程"})
            chains[key] = chain
            items[key] = {}
            for item in ("混凝土抗压强度", "钢筋拉伸"):
                items[key][item] = created(c.post("/api/v1/test-records", json_body=data_body(
                    chain, ago(3600), test_item=item)))
    for key, report_no, conclusion, item, days in PLAN:
        lab = labs[key]
        with client_for(app, lab) as c:
            r = c.issue_code(report_no, chains[key].project)
            assert r.status_code == 201, r.text
            code = r.json()["code"]
            r = c.put(f"/api/v1/reports/{code}", json_body={
                "conclusion": conclusion, "issued_on": today_cst(days), "approver": "王五",
                "parents": [chains[key].sample, items[key][item]]})
            assert r.status_code in (200, 201), r.text
            if not sealed and key == "sz1":
                r = c.put(f"/api/v1/reports/{code}/pdf", content=make_pdf(1, "控制台报告"),
                          content_type="application/pdf")
                assert r.status_code == 200, r.text
                sealed = code
        assert lab.institution is not None
        reports[code] = (lab.institution, conclusion, item, REGION_OF[key])
        report_nos[code] = report_no
    return Seeded(reports, labs, sealed, report_nos)


def expected_counts(seeded: Seeded, prefix: str) -> dict[str, Any]:
    rows = [v for v in seeded.reports.values() if v[3].startswith(prefix)]
    return {"total": len(rows), "pass": sum(1 for r in rows if r[1] == "pass"),
            "fail": sum(1 for r in rows if r[1] == "fail")}
