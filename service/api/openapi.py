"""The OpenAPI document at `/openapi.json` (and `/docs`): the little FastAPI cannot say.

Most of the document is FastAPI's, from the routes: request and response models (also
service/api/schemas.py for answers the domain builds as JSON), the signing headers as
security dependencies and `Idempotency-Key` as a declared header (service/api/auth.py,
service/api/idempotency.py), and every error answer with an example of each problem code
(service/api/routing.py from service/api/answers.py). `install_openapi(app)` (called by
`create_app`) wraps FastAPI's generator in a cache; `customise_openapi` then, on a copy:

- requires the four signing headers together (FastAPI lists each scheme as an alternative);
- adds the examples of service/api/openapi_examples.json (answers captured from a real run
  by scripts/capture_openapi_examples.py; request bodies, one sendable world whose JSON
  ones also become the request models' `examples`; multipart part encodings; parameters)
  and the `Idempotent-Replayed` header of the answers a signed write can replay;
- documents the non-JSON answers (HTML page, PDFs, PEM, CRL, time-stamp replies, bundle
  ZIP, metrics, upload headers, the offline verifier, the evidence certificate):
  service/api/openapi_answers.json;
- moves `$defs` of inline schemas into `components/schemas`, so every `$ref` resolves.

tests/test_openapi.py validates every JSON example against its schema;
tests/test_openapi_examples.py checks the data file against the routes and a real run;
tests/test_openapi_requests.py sends every request example, as written, ids filled in.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from service.api import answers
from service.api.schemas import Problem

log = logging.getLogger(__name__)

JSON = "application/json"
REPLAYED_HEADER = "Idempotent-Replayed"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# --------------------------------------------------------------------------- headers

_REPLAYED_RESPONSE_HEADER: dict[str, Any] = {
    "description": "`true` when this is the stored answer to an earlier request with the "
    "same Idempotency-Key",
    "schema": {"type": "string", "enum": ["true"]},
}

# --------------------------------------------------------------------------- examples

#: The examples (service/api/openapi_examples.json, written by
#: scripts/capture_openapi_examples.py; tests/test_openapi_examples.py checks them).
EXAMPLES_FILE = Path(__file__).with_name("openapi_examples.json")
EXAMPLES: dict[str, Any] = json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))


#: The non-JSON answers (HTML pages, PDFs, PEM, CRL, time-stamp replies, bundle ZIP, metrics,
#: upload headers) and header parameters beyond their declaration
#: (service/api/openapi_answers.json).
ANSWERS_FILE = Path(__file__).with_name("openapi_answers.json")
_ANSWERS: dict[str, Any] = json.loads(ANSWERS_FILE.read_text(encoding="utf-8"))
#: (method, path, status) -> the whole answer (description, content, headers) of a non-JSON
#: answer, or extra headers of a JSON one; merged over what FastAPI generated.
RESPONSE_OVERRIDES: dict[tuple[str, str, str], dict[str, Any]] = {
    (m.lower(), p, status): answer
    for (m, p, status), answer in (
        (key.split(" "), value) for key, value in _ANSWERS["answers"].items()
    )
}


# --------------------------------------------------------------------------- building


def install_openapi(app: FastAPI) -> None:
    """Serve the customised document: built once, on first use, then cached."""
    generate = app.openapi  # FastAPI's own generator
    lock = threading.Lock()
    cache: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not cache:
            with lock:
                if not cache:
                    cache.append(_build(app, generate))
                    app.openapi_schema = cache[0]
        return cache[0]

    app.openapi = openapi  # type: ignore[method-assign]


def _build(app: FastAPI, generate: Any) -> dict[str, Any]:
    raw: dict[str, Any] = generate()
    state = getattr(app.state, "jz", None)
    max_pdf_bytes = state.settings.security.max_pdf_bytes if state is not None else None
    try:
        return customise_openapi(copy.deepcopy(raw), max_pdf_bytes=max_pdf_bytes)
    except Exception:
        # The API must stay usable: serve FastAPI's plain document (the test catches this).
        log.exception("customising the OpenAPI document failed; serving it as generated")
        return raw


def customise_openapi(doc: dict[str, Any], *, max_pdf_bytes: int | None = None) -> dict[str, Any]:
    """Complete `doc` (FastAPI's document) in place and return it; see the module doc."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _hoist_defs(doc, schemas)
    # Problem answers name their schema by $ref (service/api/answers.py): add the model's.
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas.setdefault("Problem", problem)
    if "CodeIssued" in schemas:
        # The model's own example predates the real format (check character, leaf hash).
        schemas["CodeIssued"]["examples"] = copy.deepcopy(EXAMPLES["schemas"]["CodeIssued"])

    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method in HTTP_METHODS and isinstance(op, dict):
                _operation(path, method, op, max_pdf_bytes, schemas)

    _drop_unused_schemas(doc, ("HTTPValidationError", "ValidationError"))
    return doc


def _operation(
    path: str, method: str, op: dict[str, Any], max_pdf_bytes: int | None,
    schemas: dict[str, Any],
) -> None:
    signed = answers.is_signed_path(path)
    responses: dict[str, Any] = op.setdefault("responses", {})
    params: list[dict[str, Any]] = op.setdefault("parameters", [])

    if op.get("security"):
        # FastAPI lists each scheme of the dependencies (service/api/auth.py) as an
        # alternative; the four signing headers are required together: one requirement.
        op["security"] = [{name: [] for req in op["security"] for name in req}]
    if not params:
        del op["parameters"]
    _parameters(path, method, params)

    # Request bodies.
    content = op.get("requestBody", {}).get("content", {})
    if max_pdf_bytes and "application/pdf" in content:
        op["requestBody"]["description"] += f" At most {max_pdf_bytes} bytes."
    for media_type, media in content.items():
        examples = EXAMPLES["requests"].get(f"{method.upper()} {path} {media_type}")
        if examples is not None:
            media.setdefault("examples", {}).update(copy.deepcopy(examples))
            if media_type == JSON:
                # The model's own examples become the same sendable ones (ids of one world).
                schema = media.get("schema", {})
                ref = schema.get("$ref", "")
                target = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else schema
                target["examples"] = [copy.deepcopy(e["value"]) for e in examples.values()]
    encoding = EXAMPLES["encodings"].get(f"{method.upper()} {path}")
    if encoding is not None and "multipart/form-data" in content:
        content["multipart/form-data"]["encoding"] = copy.deepcopy(encoding)

    # Answers (the error answers are the routes' own: service/api/routing.py).
    for (m, p, status), override in RESPONSE_OVERRIDES.items():
        if (m, p) == (method, path):
            _override(responses.setdefault(status, {}), override)
    for status, response in responses.items():
        if "$ref" in response:
            continue
        example = EXAMPLES["responses"].get(f"{method.upper()} {path} {status}")
        if example is not None:
            media = response.setdefault("content", {}).setdefault(JSON, {"schema": {}})
            media.update(copy.deepcopy(example))
        if signed and method in ("post", "put") and status.startswith("2"):
            response.setdefault("headers", {}).setdefault(
                REPLAYED_HEADER, copy.deepcopy(_REPLAYED_RESPONSE_HEADER)
            )
    op["responses"] = dict(sorted(responses.items()))


def _parameters(path: str, method: str, params: list[dict[str, Any]]) -> None:
    for param in params:
        name = param.get("name", "")
        if name == "code" and param.get("in") == "query":
            continue  # the warnings routes' `code` is a warning code (its own example)
        if param.get("in") in ("path", "query", "header") and name in EXAMPLES["parameters"]:
            example = EXAMPLES["parameters"][name]
            param["example"] = example
            schema = param.get("schema", {})
            if "examples" in schema:
                schema["examples"] = [example]
        declared = _ANSWERS["parameters"].get(f"{method.upper()} {path} {name}")
        if declared is not None:
            param.update(copy.deepcopy(declared))
        named = EXAMPLES["parameter_examples"].get(f"{method.upper()} {path} {name}")
        if named is not None:
            # Named as the request body's examples: the header value each one is sent with.
            param.pop("example", None)
            param["examples"] = {k: {"value": v} for k, v in named.items()}


def _override(response: dict[str, Any], override: dict[str, Any]) -> None:
    for field, value in override.items():
        if field == "content" and value is None:
            response.pop("content", None)
        elif field == "headers":
            response.setdefault("headers", {}).update(copy.deepcopy(value))
        elif field == "content":
            response["content"] = copy.deepcopy(value)
        else:
            response[field] = copy.deepcopy(value)


def _hoist_defs(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Move `$defs` of inline schemas (e.g. `model_json_schema()` in `openapi_extra`) into
    components/schemas: in an OpenAPI document `#/$defs/…` would point at the document."""
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            media_types = list(op.get("requestBody", {}).get("content", {}).values())
            for response in op.get("responses", {}).values():
                media_types += list(response.get("content", {}).values())
            for media in media_types:
                schema = media.get("schema") if isinstance(media, dict) else None
                if isinstance(schema, dict) and "$defs" in schema:
                    renames: dict[str, str] = {}
                    for name, definition in schema.pop("$defs").items():
                        target = name
                        n = 2
                        while target in schemas and schemas[target] != definition:
                            target = f"{name}{n}"
                            n += 1
                        schemas[target] = definition
                        renames[f"#/$defs/{name}"] = f"#/components/schemas/{target}"
                    _rewrite_refs(schema, renames)
                    for name in renames.values():
                        _rewrite_refs(schemas[name.rsplit("/", 1)[1]], renames)


def _rewrite_refs(node: Any, renames: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in renames:
            node["$ref"] = renames[ref]
        for value in node.values():
            _rewrite_refs(value, renames)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value, renames)


def _drop_unused_schemas(doc: dict[str, Any], names: tuple[str, ...]) -> None:
    """Remove component schemas nothing refers to any more (FastAPI's 422 body), in order."""
    schemas = doc.get("components", {}).get("schemas", {})
    for name in names:
        schema = schemas.pop(name, None)
        if schema is not None and _refers_to(doc, f"#/components/schemas/{name}"):
            schemas[name] = schema


def _refers_to(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        if node.get("$ref") == ref:
            return True
        return any(_refers_to(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_refers_to(v, ref) for v in node)
    return False
