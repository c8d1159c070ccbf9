"""R21: an auditor account limited to a region sees the labs registered there and no
other, on every audit endpoint; an unlimited one sees all (SQLite and PostgreSQL)."""

from __future__ import annotations

from service.domain import accounts
from service.domain.accounts import region_prefix
from service.state import ServiceState
from service.storage.db import session_scope
from tests.labkit import Account, add_lab, client_for, make_app
from tests.recordkit import build_chain, today_cst


def _auditor(state: ServiceState, name: str, region: str | None) -> Account:
    with session_scope(state.sessions) as s:
        out = accounts.add_auditor(s, state.settings, name=name, region=region)
    return Account(out["key_id"], out["secret"], auditor_id=out["auditor"])


def test_region_prefix() -> None:
    assert region_prefix("440000") == "44"
    assert region_prefix("440300") == "4403"
    assert region_prefix("440305") == "440305"
    assert region_prefix("110100") == "1101"


def test_auditors_see_only_their_region(app_state: ServiceState) -> None:
    app = make_app(app_state)
    sz, bj = add_lab(app_state, 91, "440305"), add_lab(app_state, 92, "110105")
    auditors = {
        "national": _auditor(app_state, "国家", None),
        "guangdong": _auditor(app_state, "广东省", "440000"),
        "shenzhen": _auditor(app_state, "深圳市", "440300"),
        "futian": _auditor(app_state, "福田区", "440304"),
    }
    data = {}
    for lab in (sz, bj):
        with client_for(app, lab) as c:
            chain = build_chain(c, sample_code="YP-SCOPE", signed_on=today_cst(20))  # late
            code = c.issue_code("BG-SCOPE-1", chain.project).json()["code"]
            data[lab.institution] = (chain, code)
    both = {sz.institution, bj.institution}
    sees = {"national": both, "guangdong": {sz.institution}, "shenzhen": {sz.institution},
            "futian": set()}

    for who, account in auditors.items():
        with client_for(app, account) as z:
            visible = sees[who]
            for lab in (sz, bj):
                inst = lab.institution
                assert inst is not None
                chain, code = data[inst]
                answers = [
                    z.get(f"/api/v1/records/{chain.project}"),
                    z.get(f"/api/v1/records/{chain.contract}/proof"),
                    z.get("/api/v1/audit/numbering", query={"institution": inst, "year": 2026}),
                    z.get("/api/v1/audit/flags", query={"institution": inst}),
                    z.get("/api/v1/audit/nonconforming", query={"institution": inst}),
                    z.get("/api/v1/audit/overdue", query={"institution": inst}),
                    z.get(f"/api/v1/audit/reports/{code}/bundle"),
                ]
                for resp in answers:
                    _allowed(resp, inst in visible)
            # unfiltered lists hold the region's labs only
            flags = z.get("/api/v1/audit/flags").json()
            assert {f["institution"] for f in flags} == visible, who


def _allowed(resp: object, allowed: bool) -> None:
    status = resp.status_code  # type: ignore[attr-defined]
    if allowed:
        assert status in (200, 202), resp.text  # type: ignore[attr-defined]
    else:
        assert status == 403, resp.text  # type: ignore[attr-defined]
        assert resp.json()["code"] == "forbidden"  # type: ignore[attr-defined]


