"""The OpenAPI document at `/openapi.json` and its page `/docs` (service/api/openapi.py).

Every operation shows an example of its successful answer, every request body an example;
signed operations declare the four signing headers (and POST/PUT the Idempotency-Key),
public ones none; every JSON example is valid against its schema and uses the real
formats (report codes with their check character, ULIDs, lowercase hex, RFC 3339 UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from starlette.testclient import TestClient

from service.domain.codes import InvalidCode, parse_code
from service.state import build_state
from tests.fixtures.db import make_settings
from tests.labkit import make_app

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SIGNING_HEADERS = {"X-JZ-Key", "X-JZ-Timestamp", "X-JZ-Nonce", "X-JZ-Signature"}
DOC_URI = "urn:jianzheng:openapi"

ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
UTC_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@dataclass
class Served:
    app: FastAPI
    client: TestClient
    doc: dict[str, Any]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    state = build_state(make_settings(tmp, f"sqlite:///{tmp / 'jz.db'}"), chain=None)
    app = make_app(state)
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: nothing to run
    resp = client.get("/openapi.json")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    yield Served(app, client, resp.json())
    client.close()
    state.engine.dispose()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def signed(path: str) -> bool:
    return path.startswith("/api/v1/") and not path.startswith("/api/v1/public/")


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s (`#/components/...`) until a node without one."""
    seen = 0
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
        seen += 1
        assert seen < 20, f"$ref loop at {ref}"
    return node


def media_examples(media: dict[str, Any]) -> list[Any]:
    """The example values a Media Type Object carries (`example`, `examples[*].value`)."""
    values = [media["example"]] if "example" in media else []
    values += [ex["value"] for ex in media.get("examples", {}).values() if "value" in ex]
    return values


def has_example(doc: dict[str, Any], media: dict[str, Any]) -> bool:
    if media_examples(media):
        return True
    schema = resolve(doc, media.get("schema", {}))
    return bool(schema.get("examples")) or "example" in schema


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def responses_of(doc: dict[str, Any], op: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for status, response in op.get("responses", {}).items():
        yield status, resolve(doc, response)


# --------------------------------------------------------------------------- served


def test_openapi_json_is_built_once_and_cached(served: Served) -> None:
    assert served.app.openapi() is served.app.openapi()
    again = served.client.get("/openapi.json")
    assert again.status_code == 200
    assert again.json() == served.doc
    assert served.doc["openapi"].startswith("3.1")
    assert len(list(operations(served.doc))) >= 40


def test_docs_page_is_served(served: Served) -> None:
    resp = served.client.get("/docs")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "swagger" in resp.text.lower()
    assert "/openapi.json" in resp.text
    # works without a CDN: every script and stylesheet comes from the service itself
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', resp.text)
    assert assets and all(a.startswith("/docs-static/") for a in assets), assets
    for asset in assets:
        got = served.client.get(asset)
        assert got.status_code == 200 and len(got.content) > 10_000, asset
    redoc = served.client.get("/redoc")
    assert redoc.status_code == 200 and "/docs-static/redoc.standalone.js" in redoc.text


# --------------------------------------------------------------------------- examples


def test_every_operation_has_a_successful_answer_with_an_example(served: Served) -> None:
    doc = served.doc
    missing = []
    for path, method, op in operations(doc):
        ok = False
        for status, response in responses_of(doc, op):
            if not status.startswith("2"):
                continue
            content = response.get("content")
            if content:
                ok = ok or any(has_example(doc, media) for media in content.values())
            elif status == "204" or method == "head":
                # No body: the headers are the answer, each with an example.
                headers = response.get("headers", {})
                ok = ok or (
                    bool(headers)
                    and all("example" in h or "examples" in h for h in headers.values())
                )
        if not ok:
            missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_every_request_body_has_an_example(served: Served) -> None:
    doc = served.doc
    missing = []
    for path, method, op in operations(doc):
        body = op.get("requestBody")
        if body is None:
            continue
        content = resolve(doc, body).get("content", {})
        if not any(has_example(doc, media) for media in content.values()):
            missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_bodies_the_routes_read_themselves_are_documented(served: Served) -> None:
    paths = served.doc["paths"]
    pdf = paths["/api/v1/reports/{code}/pdf"]["put"]["requestBody"]["content"]
    assert pdf["application/pdf"]["schema"]["format"] == "binary"
    chunk = paths["/api/v1/uploads/{upload_id}"]["patch"]["requestBody"]["content"]
    assert media_examples(chunk["application/offset+octet-stream"])
    verify = paths["/api/v1/public/verify"]["post"]["requestBody"]["content"]
    assert all("file" in v for v in media_examples(verify["multipart/form-data"]))
    tsa = paths["/tsa"]["post"]["requestBody"]["content"]
    assert media_examples(tsa["application/timestamp-query"])


def _json_examples(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) of every JSON example in an answer, shared ones included."""
    for path, method, op in operations(doc):
        for status, response in responses_of(doc, op):
            for media_type, media in response.get("content", {}).items():
                if is_json(media_type):
                    for example in media_examples(media):
                        where = f"{method.upper()} {path} {status} {media_type}"
                        yield where, media.get("schema", {}), example
    for name, response in doc["components"].get("responses", {}).items():
        for media_type, media in response.get("content", {}).items():
            if is_json(media_type):
                for example in media_examples(media):
                    yield f"responses/{name}", media.get("schema", {}), example


def _absolute_refs(node: Any) -> Any:
    """`#/…` refs of a schema taken out of the document point into the document."""
    if isinstance(node, dict):
        return {
            k: (DOC_URI + v if k == "$ref" and v.startswith("#") else _absolute_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolute_refs(v) for v in node]
    return node


def test_json_examples_are_valid_against_their_schemas(served: Served) -> None:
    doc = served.doc
    registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))
    checked = 0
    invalid = []
    for where, schema, example in _json_examples(doc):
        validator = Draft202012Validator(_absolute_refs(schema), registry=registry)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(example)]
        if errors:
            invalid.append(f"{where}: {errors[:3]}")
        checked += 1
    assert invalid == []
    assert checked >= 45, checked
    # The examples of the answer models themselves, too.
    answer_models = {
        media["schema"]["$ref"]
        for _, _, op in operations(doc)
        for _, response in responses_of(doc, op)
        for media in response.get("content", {}).values()
        if "$ref" in media.get("schema", {})
    }
    assert len(answer_models) >= 10
    for ref in sorted(answer_models):
        validator = Draft202012Validator(_absolute_refs({"$ref": ref}), registry=registry)
        for example in resolve(doc, {"$ref": ref}).get("examples", []):
            errors = [e.message for e in validator.iter_errors(example)]
            assert errors == [], f"{ref}: {errors[:3]}"


def _format_problems(node: Any, where: str) -> Iterator[str]:
    """Values that do not look like what they name (code, record id, hash, UTC time)."""
    if isinstance(node, list):
        for i, value in enumerate(node):
            yield from _format_problems(value, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        at = f"{where}.{key}"
        if isinstance(value, str):
            # a warning's `code` is its warning code (§7.2), not a report code
            if key == "code" and ("report_code" in node or re.search(r"\.warnings\[\d+\]$", where)):
                continue
            if key in ("code", "superseded_by", "report_code"):
                try:
                    canonical = parse_code(value).canonical
                except InvalidCode as exc:
                    yield f"{at}: {value!r} is not a report code ({exc.reason})"
                    continue
                if canonical != value:
                    yield f"{at}: {value!r} is not in canonical form"
            elif key in ("record_id", "id", "upload_id", "key_id") or key.endswith("_record_id"):
                if key != "id" or len(value) == 26:  # ledger/flag ids are integers
                    if not ULID_RE.match(value):
                        yield f"{at}: {value!r} is not a ULID"
            elif key in ("leaf_hash", "sha256", "root", "original_sha256", "fingerprint"):
                if not HEX64_RE.match(value):
                    yield f"{at}: {value!r} is not 64 lowercase hex"
            elif key.endswith("_at") and not UTC_RE.match(value):
                yield f"{at}: {value!r} is not RFC 3339 UTC (…Z)"
        yield from _format_problems(value, at)


def test_answer_examples_use_the_real_formats(served: Served) -> None:
    doc = served.doc
    problems: list[str] = []
    for path, method, op in operations(doc):
        for status, response in responses_of(doc, op):
            for media_type, media in response.get("content", {}).items():
                if media_type == "application/json":
                    for example in media_examples(media):
                        where = f"{method.upper()} {path} {status}"
                        problems += _format_problems(example, where)
        for param in op.get("parameters", []):
            if param["name"] == "code" and "example" in param:
                try:
                    parse_code(param["example"])
                except InvalidCode as exc:
                    problems.append(f"{method.upper()} {path} ?code: {exc.reason}")
    assert problems == []


def test_format_check_catches_a_bad_example() -> None:
    """The format check itself: a truncated hash and a mistyped code are caught."""
    bad = {"code": "440300267K3QF9XA2MV", "leaf_hash": "5f1c…", "created_at": "2026-11-22 10:00"}
    assert len(list(_format_problems(bad, "x"))) == 3


# --------------------------------------------------------------------------- security


def test_signing_headers_are_declared_as_security_schemes(served: Served) -> None:
    schemes = served.doc["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == SIGNING_HEADERS
    for scheme in schemes.values():
        assert (scheme["type"], scheme["in"]) == ("apiKey", "header")
        assert "docs/signing.md" in scheme["description"]


def test_signed_operations_require_all_four_headers_and_public_ones_none(served: Served) -> None:
    doc = served.doc
    schemes = doc["components"]["securitySchemes"]
    wrong = []
    for path, method, op in operations(doc):
        security = op.get("security")
        if signed(path):
            ok = (
                isinstance(security, list)
                and len(security) == 1
                and {schemes[name]["name"] for name in security[0]} == SIGNING_HEADERS
                and op["responses"].get("401") is not None
            )
        else:
            ok = not security
        if not ok:
            wrong.append(f"{method.upper()} {path}: {security}")
    assert wrong == []
    assert "security" not in doc  # nothing global: /v/, /healthz, /tsa, /ca/* stay open


def test_signed_writes_take_an_idempotency_key(served: Served) -> None:
    missing = []
    checked = 0
    for path, method, op in operations(served.doc):
        if not signed(path) or method not in ("post", "put"):
            continue
        checked += 1
        names = [
            (p["in"], p["name"]) for p in op.get("parameters", []) if not p.get("required")
        ]
        if ("header", "Idempotency-Key") not in names:
            missing.append(f"{method.upper()} {path}")
    assert missing == []
    assert checked >= 15


def test_every_ref_resolves(served: Served) -> None:
    doc = served.doc
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        resolve(doc, {"$ref": ref})
    assert "HTTPValidationError" not in doc["components"]["schemas"]
