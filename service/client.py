"""Request signing (INTERFACE.md §5.1) and a small Python client for the lab API.

`sign_request` is a pure function: the same inputs give the same headers, so it can be
checked against the published vectors (docs/signing.md, tests/vectors/signing.json).
The server verifies with the same `canonical_query` / `string_to_sign`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

ALGORITHM = "JZ1-HMAC-SHA256"
#: The request-signing algorithms: key algorithm -> (first line, hashlib name). SM3 is
#: INTERFACE §7.7: the same canonical request, SM3 for the body hash and the HMAC.
ALGORITHMS: dict[str, tuple[str, str]] = {
    "hmac-sha256": (ALGORITHM, "sha256"),
    "hmac-sm3": ("JZ1-HMAC-SM3", "sm3"),
}
DEFAULT_ALGORITHM = "hmac-sha256"
HEADER_KEY = "X-JZ-Key"
HEADER_TIMESTAMP = "X-JZ-Timestamp"
HEADER_NONCE = "X-JZ-Nonce"
HEADER_SIGNATURE = "X-JZ-Signature"
NONCE_MIN_CHARS = 16
NONCE_MAX_CHARS = 64
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = "0123456789ABCDEF"

QueryInput = str | bytes | Mapping[str, str] | Sequence[tuple[str, str]] | None


def _encode_component(raw: bytes) -> str:
    """Every byte outside A-Z a-z 0-9 - . _ ~ as %XX (upper-case hex)."""
    out = []
    for b in raw:
        if b in _UNRESERVED:
            out.append(chr(b))
        else:
            out.append("%" + _HEX[b >> 4] + _HEX[b & 15])
    return "".join(out)


def canonical_query(raw_query: str | bytes) -> str:
    """The canonical query of §5.1 from the raw query string as sent (without `?`)."""
    if isinstance(raw_query, str):
        raw = raw_query.encode("utf-8")
    else:
        raw = raw_query
    pairs: list[tuple[bytes, bytes]] = []
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        # RFC 3986 percent-decoding: `+` stays a literal plus (unquote_to_bytes keeps it).
        pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    pairs.sort()
    return "&".join(_encode_component(n) + "=" + _encode_component(v) for n, v in pairs)


def query_ambiguity(raw_query: str | bytes) -> str | None:
    """Why a raw query could mean two things under one signature, or None.

    §5.1's canonical query sorts the pairs and keeps `+` a literal plus, so `a=1&a=2` and
    `a=2&a=1` sign alike while a framework reads either first or last, and `a=x+y` signs
    like `a=x%2By` while form decoding reads a space. The server refuses both shapes.
    """
    raw = raw_query.encode("utf-8") if isinstance(raw_query, str) else raw_query
    if b"+" in raw:
        return "a raw `+` in the query is ambiguous; send a space as %20 and a plus as %2B"
    seen: set[bytes] = set()
    for part in raw.split(b"&"):
        if not part:
            continue
        name = unquote_to_bytes(part.partition(b"=")[0])
        if name in seen:
            return f"query parameter {name.decode('utf-8', 'replace')!r} is given twice"
        seen.add(name)
    return None


def encode_query(query: QueryInput) -> str:
    """A query string to send: raw strings pass unchanged, pairs are percent-encoded."""
    if query is None:
        return ""
    if isinstance(query, bytes):
        return query.decode("latin-1")
    if isinstance(query, str):
        return query.removeprefix("?")
    items = list(query.items()) if isinstance(query, Mapping) else list(query)
    return "&".join(
        _encode_component(str(k).encode("utf-8")) + "=" + _encode_component(str(v).encode("utf-8"))
        for k, v in items
    )


def _hash_name(algorithm: str) -> str:
    try:
        return ALGORITHMS[algorithm][1]
    except KeyError:
        raise ValueError(f"unknown signing algorithm {algorithm!r}") from None


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def body_hash(body: bytes, algorithm: str = DEFAULT_ALGORITHM) -> str:
    """The body hash line of the string to sign: SHA-256, or SM3 for hmac-sm3 keys."""
    return hashlib.new(_hash_name(algorithm), body).hexdigest()


def new_body_hasher(algorithm: str = DEFAULT_ALGORITHM) -> Any:
    """An incremental hash object for a streamed body (`update`, `hexdigest`)."""
    return hashlib.new(_hash_name(algorithm))


def string_to_sign(
    method: str,
    path: str,
    raw_query: str | bytes,
    timestamp: str,
    nonce: str,
    body_hash: str,
    algorithm: str = DEFAULT_ALGORITHM,
) -> str:
    first = ALGORITHMS[algorithm][0] if algorithm in ALGORITHMS else ALGORITHM
    return "\n".join(
        [first, method.upper(), path, canonical_query(raw_query), timestamp, nonce, body_hash]
    )


def signature(secret: str, text: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
    return hmac.new(
        secret.encode("utf-8"), text.encode("utf-8"), _hash_name(algorithm)
    ).hexdigest()


def new_nonce() -> str:
    return secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-]


def sign_request(
    method: str,
    path: str,
    query: QueryInput,
    body: bytes,
    key_id: str,
    secret: str,
    timestamp: int | str,
    nonce: str,
    algorithm: str = DEFAULT_ALGORITHM,
) -> dict[str, str]:
    """The four X-JZ-* headers for one request (§5.1; §7.7 for `hmac-sm3` keys). `path` is
    sent exactly as given."""
    ts = str(timestamp)
    text = string_to_sign(
        method, path, encode_query(query), ts, nonce, body_hash(body, algorithm), algorithm
    )
    return {
        HEADER_KEY: key_id,
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(secret, text, algorithm),
    }


class JianzhengClient:
    """A small signing client over httpx (sync). Works with a base URL or an ASGI app."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        clock: Any = None,
        http: httpx.Client | None = None,
        algorithm: str = DEFAULT_ALGORITHM,
    ) -> None:
        """`base_url` is an origin (scheme, host, port): paths are signed as given.
        `http` lets a caller supply its own client (e.g. Starlette's TestClient);
        `algorithm` is the key's (`hmac-sha256`, or `hmac-sm3`, INTERFACE §7.7)."""
        self.key_id = key_id
        self._secret = secret
        self.algorithm = algorithm
        _hash_name(algorithm)
        self._clock = clock or time.time
        self.http = http or httpx.Client(base_url=base_url, transport=transport, timeout=timeout)

    def __repr__(self) -> str:
        return f"JianzhengClient(key_id={self.key_id!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> JianzhengClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: QueryInput = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        if json_body is not None and content is not None:
            raise ValueError("give json_body or content, not both")
        body = b""
        hdrs: dict[str, str] = {}
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif content is not None:
            body = content
        if content_type:
            hdrs["Content-Type"] = content_type
        if idempotency_key:
            hdrs["Idempotency-Key"] = idempotency_key
        raw_query = encode_query(query)
        # Sign the path and query exactly as httpx will put them on the wire.
        url = httpx.URL(path + ("?" + raw_query if raw_query else ""))
        sent_path, _, sent_query = url.raw_path.decode("ascii").partition("?")
        hdrs.update(
            sign_request(
                method, sent_path, sent_query, body, self.key_id, self._secret,
                int(self._clock()), new_nonce(), self.algorithm,
            )
        )
        if headers:
            hdrs.update(headers)
        return self.http.request(method.upper(), url, content=body, headers=hdrs)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    # Convenience wrappers for the endpoints of INTERFACE §5.3 this module's users need most.

    def issue_code(self, report_no: str, project_id: str, **kw: Any) -> httpx.Response:
        return self.post(
            "/api/v1/report-codes", json_body={"report_no": report_no, "project_id": project_id},
            **kw,
        )
