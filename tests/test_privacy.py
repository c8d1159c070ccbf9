"""Privacy: no public response carries an unmasked ID number (18 digits) or mobile number
(11 digits), nor the planted names, whatever the report's status and however it is asked.

The reports' records carry personal data on purpose (tests/public_kit.py plants a witness's
ID number and mobile number, a contact phone, names; a revocation reason names a mobile
number). Every public endpoint is asked about every status, in both languages; every answer
is scanned.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from service.anchoring.worker import AnchorWorker, anchor_until_drained
from service.state import ServiceState
from tests.fixtures.chain import DevChain, new_chain
from tests.fixtures.db import state_with_chain
from tests.labkit import add_lab, client_for, make_app
from tests.public_kit import (
    WITNESS_ID,
    WITNESS_PHONE,
    Built,
    issue_report,
    make_pdf,
    privacy_findings,
    sealed_bytes,
)

pytestmark = pytest.mark.chain


@dataclass
class World:
    state: ServiceState
    http: TestClient
    reports: dict[str, Built]
    responses: list[tuple[str, int, str]] = field(default_factory=list)

    def get(self, path: str) -> None:
        r = self.http.get(path)
        self.responses.append((path, r.status_code, r.text))

    def verify(self, name: str, data: bytes, media_type: str) -> None:
        r = self.http.post("/api/v1/public/verify", files={"file": (name, data, media_type)})
        assert r.status_code == 200, r.text
        self.responses.append((f"verify {name}", r.status_code, r.text))


@pytest.fixture(scope="module")
def world(hardhat: DevChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("privacy")
    chain = new_chain(hardhat)
    state = state_with_chain(tmp, f"sqlite:///{tmp / 'jz.db'}", chain,
                             public={"rate_limit_per_minute": 0})
    app = make_app(state)
    lab = add_lab(state, 65)
    assert lab.institution is not None
    client = client_for(app, lab)
    reports = {key: issue_report(state, client, lab.institution, f"PV{i}")
               for i, key in enumerate(("genuine", "revoked", "superseded", "new", "tampered"))}
    r = client.post(f"/api/v1/reports/{reports['revoked'].code}/revocation",
                    json_body={"reason": f"录入错误，联系人 {WITNESS_PHONE}，证件 {WITNESS_ID}",
                               "superseded_by": None})
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/reports/{reports['superseded'].code}/revocation",
                    json_body={"reason": "结论更正", "superseded_by": reports["new"].code})
    assert r.status_code == 201, r.text
    worker = AnchorWorker(state.settings, state.engine, chain)
    anchor_until_drained(worker)
    anchor_until_drained(worker)
    reports["pending"] = issue_report(state, client, lab.institution, "PV9")
    witness = reports["tampered"].record_ids["witness"]
    with state.engine.begin() as conn:
        canonical = bytes(conn.execute(text("SELECT canonical FROM records WHERE id = :id"),
                                       {"id": witness}).scalar_one())
        assert b"sealing" in canonical
        conn.execute(text("UPDATE records SET canonical = :c WHERE id = :id"),
                     {"c": canonical.replace(b"sealing", b"sealed"), "id": witness})
    yield World(state, TestClient(app), reports)
    state.engine.dispose()


def test_personal_data_is_really_stored(world: World) -> None:
    """The scan below can fail: the data it looks for is in the database and the files."""
    with world.state.engine.connect() as conn:
        blobs = b"".join(conn.execute(text("SELECT canonical FROM records")).scalars())
    assert WITNESS_ID.encode() in blobs and WITNESS_PHONE.encode() in blobs
    assert privacy_findings(f"见证人 {WITNESS_ID} 电话 {WITNESS_PHONE}")


def test_unknown_code_answers_echo_only_a_canonical_code(world: World) -> None:
    """Raw input is never echoed; a well-formed code that was never issued is named in its
    canonical form (INTERFACE §4), whatever spelling the visitor used."""
    from service.domain.codes import generate_code
    from service.domain.public import display_code

    never = generate_code("440300", 2026)
    typed = never.printed.lower()
    page = world.http.get(f"/v/{typed}")
    data = world.http.get(f"/api/v1/public/reports/{typed}")
    assert page.status_code == data.status_code == 404
    assert data.json()["code"] == "unknown_code" and never.canonical in data.json()["detail"]
    assert display_code(never.canonical) in page.text
    assert typed not in page.text and typed not in data.text
    for raw in ("<b>NOT-A-CODE", "hello world 123", "44030026%20ZZZ"):
        page = world.http.get(f"/v/{raw}")
        en = world.http.get(f"/v/{raw}?lang=en")
        data = world.http.get(f"/api/v1/public/reports/{raw}")
        assert page.status_code == en.status_code == data.status_code == 404
        assert 'data-status="unknown"' in page.text and "未找到" in page.text
        for shown in (raw, raw.lower(), "NOT-A-CODE", "hello", "ZZZ"):
            assert shown not in page.text and shown not in en.text and shown not in data.text
        assert 'href="?lang=en"' in page.text and 'href="?lang=zh"' in en.text


def test_every_public_response_is_masked(world: World) -> None:
    import pypdfium2 as pdfium

    for built in world.reports.values():
        for form in (built.code, built.code.lower()):
            world.get(f"/v/{form}")
            world.get(f"/v/{form}?lang=en")
            world.get(f"/api/v1/public/reports/{form}")
    world.get("/v/44030026AAAAAAAAAAAAAAA")
    world.get("/api/v1/public/reports/44030026AAAAAAAAAAAAAAA")
    statuses = {path: status for path, status, _ in world.responses}
    assert statuses[f"/api/v1/public/reports/{world.reports['tampered'].code}"] == 200
    assert statuses["/api/v1/public/reports/44030026AAAAAAAAAAAAAAA"] == 404
    # A visitor who types an ID or phone number (or anything else) as the code must not see
    # it rendered back: those answers are scanned like the rest.
    for typed in (WITNESS_ID, WITNESS_PHONE, f"{WITNESS_ID[:9]}-{WITNESS_ID[9:]}"):
        world.get(f"/v/{typed}")
        world.get(f"/v/{typed}?lang=en")
        world.get(f"/api/v1/public/reports/{typed}")
        world.get(f"/v/{world.reports['genuine'].code}?lang={typed}")
    for path, status, _ in world.responses[-12:]:
        assert status == (200 if "lang=" in path and "/v/" + world.reports["genuine"].code
                          in path else 404), path

    for key in ("genuine", "revoked"):
        sealed = sealed_bytes(world.state, world.reports[key])
        world.verify(f"{key}.pdf", sealed, "application/pdf")
        flipped = bytearray(sealed)
        flipped[len(sealed) // 3] ^= 0x01
        world.verify(f"{key}-modified.pdf", bytes(flipped), "application/pdf")
        doc = pdfium.PdfDocument(sealed)
        image = doc[0].render(scale=150 / 72).to_pil().convert("RGB")
        doc.close()
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=60)
        world.verify(f"{key}.jpg", buf.getvalue(), "image/jpeg")
    world.verify("foreign.pdf", make_pdf(1, f"别人的报告 {WITNESS_PHONE}"), "application/pdf")
    world.verify("garbage.bin", b"\x00" * 64, "application/octet-stream")

    assert len(world.responses) == 6 * 2 * 3 + 2 + 3 * 4 + 2 * 3 + 2
    leaks = [(what, found) for what, _, body in world.responses
             if (found := privacy_findings(body))]
    assert leaks == []
