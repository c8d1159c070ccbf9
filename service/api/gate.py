"""The public routes' gate: the rate limit and the cap on concurrent verifications, both
checked in ASGI middleware before the request body is read.

A client over its limit is answered 429 `rate_limited` (Retry-After) before a byte of
its body is taken, so it cannot make the service spool 20 MB multipart bodies only to be
refused afterwards. `POST /api/v1/public/verify` is also capped at
`JZ_PUBLIC__VERIFY_CONCURRENCY` requests in flight per process: one more is answered 503
`verify_busy` (Retry-After), again before its body is read.

Clients are keyed by address: an IPv4 address, or the /64 of an IPv6 address (one
subscriber's prefix: rotating through its 2^64 addresses gains nothing). Behind a reverse
proxy the peer is the proxy; list it in `JZ_PUBLIC__TRUSTED_PROXIES` (addresses or CIDR
networks) and the client is the rightmost address of `JZ_PUBLIC__FORWARDED_HEADER`
(default `X-Forwarded-For`) that is not itself a trusted proxy. The header is ignored
from any other peer, so a client cannot choose its own bucket.

The buckets are in the database (service.storage.ratelimit.SharedRateLimiter): the limit
holds across every API process, not once per process.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.problems import problem_response
from service.domain.public.untrusted import busy
from service.errors import RateLimited
from service.state import ServiceState

#: Paths behind the gate.
PUBLIC_PREFIXES = ("/v/", "/V/", "/api/v1/public/")
VERIFY_PATH = "/api/v1/public/verify"
#: Tokens one request costs: a verify renders and decodes, a PDF or a raw-data file is a
#: download, anything else (a page, the JSON, a key image) costs 1.
VERIFY_COST = 5.0
DOWNLOAD_COST = 2.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def cost_of(path: str) -> float:
    if path == VERIFY_PATH:
        return VERIFY_COST
    if path.endswith("/pdf") or "/raw/" in path:
        return DOWNLOAD_COST
    return 1.0


def parse_networks(entries: Sequence[str]) -> list[Network]:
    """`JZ_PUBLIC__TRUSTED_PROXIES` as networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry]


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def bucket_of(address: Address) -> str:
    """The bucket of an address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_key(
    peer: str | None, forwarded: str | None, trusted: Sequence[Network]
) -> str:
    """The rate-limit key of a request from `peer` carrying `forwarded` (the forwarded
    header's value, if any)."""
    address = _address(peer) if peer else None
    if address is None:
        return peer or "unknown"
    if forwarded and any(address in net for net in trusted):
        for hop in reversed(forwarded.split(",")):
            hop_address = _address(hop)
            if hop_address is None:
                break  # a garbled header: the last trusted hop is the client
            address = hop_address
            if not any(hop_address in net for net in trusted):
                break
    return bucket_of(address)


class PublicGateMiddleware:
    """Rate limit and verify concurrency for the public routes, before the body."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state
        public = state.settings.public
        self.trusted = parse_networks(public.trusted_proxies)
        self.header = public.forwarded_header.lower().encode("latin-1")
        self.verify_cap = public.verify_concurrency
        self.verifying = 0

    def key(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = None
        if self.trusted:
            values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == self.header]
            forwarded = ",".join(values) or None
        return client_key(peer, forwarded, self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        limiter = self.state.rate_limiter
        if limiter.enabled:
            wait = await anyio.to_thread.run_sync(limiter.take, self.key(scope), cost_of(path))
            if wait > 0:
                refused = RateLimited(
                    "rate_limited",
                    "too many requests from this address; try again later",
                    retry_after_s=wait,
                )
                await problem_response(refused)(scope, receive, send)
                return
        if path != VERIFY_PATH or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if self.verifying >= self.verify_cap:
            await problem_response(busy())(scope, receive, send)
            return
        self.verifying += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.verifying -= 1
