"""The public gate (service.api.gate): the rate limit and the verify concurrency cap are
checked before the body is read, the verify body is capped at what the route reads,
IPv6 clients are keyed by /64, forwarded headers count only from trusted proxies, and the
limit holds across API processes sharing one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from service.api.gate import client_key, parse_networks
from service.state import ServiceState, build_state
from tests.fixtures.db import make_settings
from tests.labkit import make_app

BOUNDARY = "jzboundary"


def _state(tmp_path: Path, db_url: str, **public: Any) -> ServiceState:
    return build_state(make_settings(tmp_path, db_url, public=public), chain=None)


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.reads = 0

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def _call(
    app: Any, path: str, *, client: str = "192.0.2.7", method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"",
    hold: asyncio.Event | None = None, answer: Answer | None = None,
) -> Answer:
    """One request straight through the ASGI app, counting the body reads."""
    answer = answer or Answer()

    async def receive() -> dict[str, Any]:
        answer.reads += 1
        if hold is not None:
            await hold.wait()
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "client": (client, 40000),
        "server": ("127.0.0.1", 8000), "headers": headers or [],
    }
    await app(scope, receive, send)
    return answer


def _multipart(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.pdf\"\r\n"
        "Content-Type: application/pdf\r\n\r\n"
    ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = [
        (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return headers, body


def test_a_client_over_its_limit_is_refused_before_its_body_is_read(
    tmp_path: Path, db_url: str
) -> None:
    state = _state(tmp_path, db_url, rate_limit_per_minute=4)  # a burst of one token
    try:
        app = make_app(state)
        headers, body = _multipart(b"%PDF-1.7 not really")
        first = asyncio.run(_call(app, "/api/v1/public/verify", headers=headers, body=body))
        assert first.status == 200, first.body
        second = asyncio.run(_call(app, "/api/v1/public/verify", headers=headers, body=body))
        assert second.status == 429 and second.json["code"] == "rate_limited"
        assert int(second.headers["retry-after"]) >= 1
        assert second.reads == 0  # not one byte of the body was taken
    finally:
        state.close()


def test_the_limit_holds_across_two_api_processes_sharing_the_database(
    tmp_path: Path, db_url: str
) -> None:
    """Two app instances (as two `jianzheng api` processes) on one database: together they
    grant one client no more than one bucket, not one bucket each."""
    one = _state(tmp_path / "a", db_url, rate_limit_per_minute=4)  # burst 1, 1 per 15 s
    two = build_state(one.settings, chain=None, migrate=False)
    try:
        clients = [TestClient(make_app(one)), TestClient(make_app(two))]
        statuses = [clients[i % 2].get("/api/v1/public/reports/NOPE").status_code
                    for i in range(6)]
        assert statuses.count(404) == 1, statuses  # per-process buckets would grant 2
        assert statuses.count(429) == 5, statuses
    finally:
        one.close()
        two.close()


def test_ipv6_clients_share_the_bucket_of_their_64(tmp_path: Path, sqlite_url: str) -> None:
    state = _state(tmp_path, sqlite_url, rate_limit_per_minute=4)
    try:
        app = make_app(state)

        def get(client: str) -> int:
            return asyncio.run(
                _call(app, "/api/v1/public/reports/NOPE", client=client, method="GET")
            ).status

        assert get("2001:db8:1:2::1") == 404
        assert get("2001:db8:1:2:ffff::9") == 429  # same /64: same bucket
        assert get("2001:db8:1:3::1") == 404  # another /64
        assert get("::ffff:198.51.100.4") == 404
        assert get("198.51.100.4") == 429  # an IPv4-mapped address is the IPv4 client
    finally:
        state.close()


def test_forwarded_headers_count_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8", "192.0.2.1"])
    xff = "198.51.100.9, 203.0.113.5, 10.1.2.3"
    assert client_key("192.0.2.1", xff, trusted) == "203.0.113.5"  # rightmost untrusted hop
    assert client_key("198.51.100.200", xff, trusted) == "198.51.100.200"  # not a proxy
    assert client_key("192.0.2.1", None, trusted) == "192.0.2.1"
    assert client_key("192.0.2.1", "2001:db8:9:9::5", trusted) == "2001:db8:9:9::/64"
    assert client_key("192.0.2.1", "garbage, 10.0.0.5", trusted) == "10.0.0.5"
    assert client_key("testclient", None, trusted) == "testclient"


def test_the_forwarded_header_names_the_client_behind_a_trusted_proxy(
    tmp_path: Path, sqlite_url: str
) -> None:
    state = _state(tmp_path, sqlite_url, rate_limit_per_minute=4,
                   trusted_proxies=["127.0.0.1"])
    try:
        app = make_app(state)

        def get(forwarded: str) -> int:
            headers = [(b"x-forwarded-for", forwarded.encode())]
            return asyncio.run(_call(app, "/api/v1/public/reports/NOPE", client="127.0.0.1",
                                     method="GET", headers=headers)).status

        assert get("203.0.113.5") == 404
        assert get("203.0.113.6") == 404  # another client behind the same proxy
        assert get("203.0.113.5") == 429
    finally:
        state.close()


def test_verify_beyond_the_concurrency_cap_is_refused_before_its_body(
    tmp_path: Path, sqlite_url: str
) -> None:
    state = _state(tmp_path, sqlite_url, rate_limit_per_minute=0,
                   verify_concurrency=1)
    try:
        app = make_app(state)
        headers, body = _multipart(b"%PDF-1.7 not really")

        async def scenario() -> tuple[Answer, Answer]:
            hold, held = asyncio.Event(), Answer()
            first = asyncio.create_task(_call(
                app, "/api/v1/public/verify", headers=headers, body=body, hold=hold,
                answer=held))
            while held.reads == 0:  # until the first request waits for its body
                await asyncio.sleep(0.01)
            second = await _call(app, "/api/v1/public/verify", headers=headers, body=body)
            hold.set()
            return await first, second

        first, second = asyncio.run(scenario())
        assert second.status == 503 and second.json["code"] == "verify_busy", second.body
        assert int(second.headers["retry-after"]) >= 1
        assert second.reads == 0
        assert first.status == 200
    finally:
        state.close()


def test_the_verify_body_is_capped_at_what_the_route_reads(tmp_path: Path, sqlite_url: str) -> None:
    state = _state(tmp_path, sqlite_url, rate_limit_per_minute=0,
                   max_verify_bytes=1024 * 1024)
    try:
        app = make_app(state)
        headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                   (b"content-length", str(2 * 1024 * 1024).encode())]
        answer = asyncio.run(_call(app, "/api/v1/public/verify", headers=headers))
        assert answer.status == 413 and answer.json["code"] == "body_too_large"
        assert answer.reads == 0
    finally:
        state.close()
