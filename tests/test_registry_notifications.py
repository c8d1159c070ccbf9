"""The registry's warnings reach the supervision agency's notifications (issue 13), like
a failed seal check: a seal or witness record signed by an unverified key, a test record
naming an unregistered device, one whose calibration expired or an unregistered tester,
and a late witness replacement each queue one `registry_warning` notification for the
project's agency — delivered by the webhook (`X-JZ-Event: registry_warning`) and listed
by `GET /api/v1/audit/notifications` for the agencies of that region (440300 sees them,
110000 does not). Records the agency vouched for queue none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from service.domain.notify import WebhookNotifier, deliver_due
from service.domain.reports.lifecycle import china_today
from service.state import ServiceState, build_state
from tests.fixtures.db import make_settings
from tests.labkit import add_agency, add_auditor, add_lab, client_for, make_app
from tests.recordkit import (
    VALID_ID_NUMBER,
    WitnessSigner,
    ago,
    build_chain,
    data_body,
    register_device,
)


class _Receiver:
    """A webhook receiver that keeps every delivery (event header, JSON body)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.events.append((self.headers["X-JZ-Event"], json.loads(body)))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def _rules(entry: dict[str, Any]) -> list[str]:
    return [w["rule"] for w in entry["payload"]["warnings"]]


def test_registry_warnings_reach_the_agency_of_the_region(
    tmp_path: Path, db_url: str, receiver: _Receiver
) -> None:
    settings = make_settings(tmp_path, db_url, notify={"webhook_url": receiver.url})
    state: ServiceState = build_state(settings, chain=None)
    try:
        app = make_app(state)
        lab = add_lab(state, 161)
        agency = add_agency(state)
        far_agency = add_agency(state, region="110000")
        auditor = add_auditor(state)
        inst = lab.institution or ""
        with client_for(app, lab) as c, client_for(app, agency) as a, client_for(
            app, far_agency
        ) as fa, client_for(app, auditor) as r:
            vouched = build_chain(c, sample_code="YP-NOTE-0", agency=a)  # nothing to tell
            assert a.get("/api/v1/audit/notifications").json() == []

            chain = build_chain(c, sample_code="YP-NOTE-1")  # the lab's own witness key
            stranger = c.post("/api/v1/test-records", json_body=data_body(
                chain, ago(300), tester="赵六", device={"id": "WN-0001", "name": "万能试验机"}))
            assert stranger.status_code == 201, stranger.text
            register_device(a, inst, device={"id": "KZ-0009", "name": "抗折试验机"},
                            valid_until=(china_today() - timedelta(days=1)).isoformat())
            expired = c.post("/api/v1/test-records", json_body=data_body(
                vouched, ago(100), test_item="水泥胶砂抗折强度",
                device={"id": "KZ-0009", "name": "抗折试验机"}))
            assert expired.status_code == 201, expired.text
            late = a.post("/api/v1/agency/witnesses", json_body={
                "institution": inst,
                "person": {"name": "李四", "id_number": VALID_ID_NUMBER},
                "algorithm": "ed25519", "public_key": WitnessSigner.new().public_b64(),
                "replaces": chain.witness_key.key_id,
                "effective_on": china_today().isoformat()})
            assert late.status_code == 201, late.text

            mine = a.get("/api/v1/audit/notifications", query={"event": "registry_warning"})
            assert mine.status_code == 200, mine.text
            by_record = {e["payload"]["record_id"]: e for e in mine.json()}
            assert _rules(by_record[chain.seal]) == ["witness_unverified"]
            assert _rules(by_record[chain.witness]) == ["witness_unverified"]
            assert sorted(_rules(by_record[stranger.json()['record_id']])) == [
                "device_unregistered", "tester_unregistered"]
            assert _rules(by_record[expired.json()["record_id"]]) == ["calibration_expired"]
            assert _rules(by_record[late.json()["record_id"]]) == ["witness_replacement_late"]
            assert len(by_record) == 5  # the vouched chain's records queued nothing
            seal_note = by_record[chain.seal]
            assert seal_note["agency_region"] == "440305"  # the project's (属地)
            assert seal_note["payload"]["project"]["record_id"] == chain.project
            assert seal_note["payload"]["sample_code"] == "YP-NOTE-1"
            assert seal_note["institution"] == inst and seal_note["status"] == "pending"

            # another region's agency hears nothing of them; an auditor of all sees them
            assert fa.get("/api/v1/audit/notifications").json() == []
            assert {e["id"] for e in r.get("/api/v1/audit/notifications").json()} == {
                e["id"] for e in mine.json()}
            assert c.get("/api/v1/audit/notifications").status_code == 403

        # the webhook receives them, each with the region to route on
        delivered = deliver_due(state.sessions, WebhookNotifier(receiver.url), settings.notify)
        assert delivered == 5
        assert {e for e, _ in receiver.events} == {"registry_warning"}
        assert {p["record_id"] for _, p in receiver.events} == set(by_record)
        assert all(p["agency_region"].startswith("4403") for _, p in receiver.events)
        with client_for(app, agency) as a:
            after = a.get("/api/v1/audit/notifications").json()
        assert {e["status"] for e in after} == {"delivered"}
    finally:
        state.engine.dispose()
