"""Helpers for lab-API tests: valid USCCs, accounts, signed clients, seed records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient
from stdnum.cn import uscc as stdnum_uscc

from service.app import create_app
from service.client import JianzhengClient
from service.domain import accounts
from service.domain.evidence import append_record
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import Record


def make_uscc(serial: int, region: str = "440300") -> str:
    """A valid unified social credit code (check digit computed) for tests."""
    body = f"91{region}" + f"MA{serial:07d}"[-9:]
    return body + stdnum_uscc.calc_check_digit(body)


@dataclass
class Account:
    key_id: str
    secret: str
    institution: str | None = None
    auditor_id: str | None = None
    #: Request signing of the key (§5.1 `hmac-sha256`, or §7.7 `hmac-sm3`).
    algorithm: str = "hmac-sha256"


def add_lab(state: ServiceState, serial: int, region: str = "440300") -> Account:
    with session_scope(state.sessions) as s:
        out = accounts.add_institution(
            s, state.settings, uscc=make_uscc(serial, region), region=region, name=f"Lab {serial}"
        )
    return Account(out["key_id"], out["secret"], institution=out["institution"])


def add_auditor(state: ServiceState, name: str = "Auditor") -> Account:
    with session_scope(state.sessions) as s:
        out = accounts.add_auditor(s, state.settings, name=name)
    return Account(out["key_id"], out["secret"], auditor_id=out["auditor"])


def add_agency(state: ServiceState, region: str = "440300") -> Account:
    """A supervision-agency account (监督机构) for `region`."""
    with session_scope(state.sessions) as s:
        out = accounts.add_agency(s, state.settings, name=f"监督站 {region}", region=region)
    return Account(out["key_id"], out["secret"], auditor_id=out["account"])


def make_app(state: ServiceState) -> FastAPI:
    return create_app(state.settings, state=state)


def client_for(app: FastAPI, account: Account) -> JianzhengClient:
    return JianzhengClient(
        "http://testserver",
        account.key_id,
        account.secret,
        http=TestClient(app, base_url="http://testserver", raise_server_exceptions=False),
    )


def seed_record(
    state: ServiceState, institution: str, type: str, body: dict[str, Any] | None = None,
    parents: list[str] | None = None,
) -> str:
    """A record written directly through the evidence layer (stands in for other routes)."""
    with session_scope(state.sessions) as s:
        parent_rows = [s.get(Record, p) for p in parents or []]
        rec = append_record(
            s, type=type, institution=institution, body=body or {"name": type},
            parents=[p for p in parent_rows if p is not None],
        )
        return rec.id


def seed_report(state: ServiceState, institution: str, code: str) -> Record:
    """A failed report record written through the evidence layer (detached)."""
    with session_scope(state.sessions) as s:
        rec = append_record(
            s, type="report", institution=institution, code=code,
            body={"code": code, "conclusion": "fail"},
        )
        s.expunge(rec)
        return rec


def all_routes(app: FastAPI) -> list[Any]:
    """Every route of the app, inside included routers too (FastAPI wraps them in
    `_IncludedRouter`)."""
    out: list[Any] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)
            else:
                out.append(route)

    walk(list(app.routes))
    return out
