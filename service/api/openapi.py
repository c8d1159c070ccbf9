"""The OpenAPI document at `/openapi.json` (and `/docs`): the little FastAPI cannot say.

Most of the document is FastAPI's, from the routes: request and response models (also
service/api/schemas.py for answers the domain builds as JSON), the signing headers as
security dependencies and `Idempotency-Key` as a declared header (service/api/auth.py,
service/api/idempotency.py), and every error answer with an example of each problem code
(service/api/routing.py from service/api/answers.py). `install_openapi(app)` (called by
`create_app`) wraps FastAPI's generator in a cache; `customise_openapi` then, on a copy:

- requires the four signing headers together (FastAPI lists each scheme as an alternative);
- adds the examples of service/api/openapi_examples.json (answers captured from a real run
  by scripts/capture_openapi_examples.py, request bodies, parameters) and the
  `Idempotent-Replayed` header of the answers a signed write can replay;
- documents the non-JSON answers (HTML page, PDFs, PEM, CRL, time-stamp replies, bundle
  ZIP, metrics, upload headers) and multipart encodings: `RESPONSE_OVERRIDES` below;
- moves `$defs` of inline schemas into `components/schemas`, so every `$ref` resolves.

tests/test_openapi.py validates every JSON example against its schema;
tests/test_openapi_examples.py checks the data file against the routes and a real run.
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
from service.api.offline_examples import OFFLINE_OVERRIDES
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
_WORLD: dict[str, str] = EXAMPLES["world"]
CODE = _WORLD["code"]
CODE_PRINTED = _WORLD["code_printed"]
UPLOAD_ID = _WORLD["upload_id"]
SEALED_SHA256 = _WORLD["sealed_sha256"]
ORIGINAL_SHA256 = _WORLD["original_sha256"]


def _named(summary: str, value: Any, description: str | None = None) -> dict[str, Any]:
    """An OpenAPI Example Object."""
    example: dict[str, Any] = {"summary": summary, "value": value}
    if description:
        example["description"] = description
    return example



# --------------------------------------------------------------------------- non-JSON answers

_BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
_TEXT: dict[str, Any] = {"type": "string"}

_PDF_HEADERS: dict[str, Any] = {
    "ETag": {
        "description": "the SHA-256 of the file, quoted",
        "schema": _TEXT,
        "example": f'"{SEALED_SHA256}"',
    },
    "X-Content-SHA256": {
        "description": "lowercase hex SHA-256 of the file (the one the evidence record names)",
        "schema": _TEXT,
        "example": SEALED_SHA256,
    },
    "Content-Disposition": {
        "schema": _TEXT,
        "example": f'attachment; filename="{CODE}.pdf"',
    },
}

_SEALED_PDF_EXAMPLE = _named(
    "The sealed report PDF (binary, abbreviated)",
    "%PDF-1.7\n… the lab's pages, each with the QR code and seal stamped, followed by the "
    "PAdES signature (and time-stamp) …\n%%EOF",
    "The lab's PDF with the QR code of the verify URL and the institution's seal on every "
    "page, PAdES-signed with the institution's seal key.",
)

_PAGE_EXAMPLE = f"""<!doctype html>
<html lang="zh-CN">
<head><meta charset="utf-8"><title>真实有效 · 检测报告验证</title>…</head>
<body>
<header><b>见证 · 检测报告验证</b>
<a id="lang" href="/v/{CODE}?lang=en" hreflang="en">English</a></header>
<main>
<section id="status" class="card status st-genuine" data-status="genuine">
<div class="ico" aria-hidden="true">✓</div>
<div class="big">真实有效</div>
<div class="sub mono code">{CODE_PRINTED}</div>
<div class="sub">报告与平台存证一致，签章有效，已上链存证。</div>
</section>
<section class="card" id="report">…</section>
<a class="btn" id="pdf" href="/api/v1/public/reports/{CODE}/pdf">
下载已签章报告（PDF），与纸质报告比对</a>
<section class="card" id="signature">…</section>
<section class="card" id="anchor">…</section>
<section class="card" id="chain">…</section>
</main>
<footer>核验时间 2026-11-23 04:22:10 (北京时间)<br>个人信息已脱敏</footer>
</body>
</html>
"""

_HALTED_HELP = "1 while anchoring is halted because the database and the chain disagree"
_METRICS_EXAMPLE = f"""# HELP jianzheng_pending_leaves Accepted leaves not yet in a batch
# TYPE jianzheng_pending_leaves gauge
jianzheng_pending_leaves 0.0
# HELP jianzheng_oldest_pending_age_seconds Age of the oldest leaf not yet in a batch
# TYPE jianzheng_oldest_pending_age_seconds gauge
jianzheng_oldest_pending_age_seconds 0.0
# HELP jianzheng_unconfirmed_batches Batches built but not yet anchored
# TYPE jianzheng_unconfirmed_batches gauge
jianzheng_unconfirmed_batches 0.0
# HELP jianzheng_last_anchored_seq Sequence number of the newest anchored batch
# TYPE jianzheng_last_anchored_seq gauge
jianzheng_last_anchored_seq 1.0
# HELP jianzheng_anchor_failures_total Failed anchoring attempts
# TYPE jianzheng_anchor_failures_total gauge
jianzheng_anchor_failures_total 0.0
# HELP jianzheng_anchor_halted {_HALTED_HELP}
# TYPE jianzheng_anchor_halted gauge
jianzheng_anchor_halted 0.0
"""

_ROOTS_PEM_EXAMPLE = """-----BEGIN CERTIFICATE-----
MIIB2TCCAX+gAwIBAgIUAYYRD7xS9SdFIC3lSdF5huVPMsAwCgYIKoZIzj0EAwIw
STELMAkGA1UEBhMCQ04xEjAQBgNVBAoMCUppYW56aGVuZzEmMCQGA1UEAwwdSmlh
bnpoZW5nIERldmVsb3BtZW50IFJvb3QgQ0EwHhcNMjYxMTIyMTkyMTUwWhcNNDYx
MTE3MjAyMTUwWjBJMQswCQYDVQQGEwJDTjESMBAGA1UECgwJSmlhbnpoZW5nMSYw
JAYDVQQDDB1KaWFuemhlbmcgRGV2ZWxvcG1lbnQgUm9vdCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABHTGkeGec371Hr+PAYAV574GlMpn4J2peb/Kvb0UbgI/
V7W6adbSEVqwogTVrtzV4twE7FXSVB5+7z01CAtkN8ijRTBDMBIGA1UdEwEB/wQI
MAYBAf8CAQAwDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBR/kFrFKrWLxpLwZTps
T1A+AihvLTAKBggqhkjOPQQDAgNIADBFAiEAlCt9g1MNcGdOcKIQqx5gURzoMrD2
XfEvA5BV48Qoi9wCIGQP6YOdaMhTQCEEZ3Ivfd6rdkCIUT9o/RQznJF+aI6t
-----END CERTIFICATE-----
"""

#: A DER TimeStampReq (RFC 3161) for a SHA-256 hash, base64 for display.
_TSA_QUERY_B64 = (
    "MD8CAQEwMTANBglghkgBZQMEAgEFAAQghF6RgxMZ6JxNZWvbgMJ4rAmnIw1h5d/S4bH7tDasiRcCBFoXwN4BAf8="
)

_UPLOAD_OFFSET_HEADER: dict[str, Any] = {
    "description": "bytes received so far: where the next chunk starts",
    "schema": {"type": "integer", "minimum": 0},
    "example": 600,
}

#: (method, path, status) -> the whole answer (description, content, headers) of a non-JSON
#: answer, or extra headers of a JSON one; merged over what FastAPI generated.
RESPONSE_OVERRIDES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("get", "/v/{code}", "200"): {
        "description": "The verification page (HTML, zh-CN; `?lang=en` for English); the "
        "status is in `#status[data-status]`.",
        "headers": {"Content-Language": {"schema": _TEXT, "example": "zh-CN"}},
        "content": {
            "text/html": {
                "schema": _TEXT,
                "examples": {"genuine": _named("A genuine report (abbreviated)", _PAGE_EXAMPLE)},
            }
        },
    },
    ("get", "/v/{code}", "404"): {
        "description": "A code the platform never issued: the same page saying 未找到 "
        "(`data-status=\"unknown\"`).",
        "content": {"text/html": {"schema": _TEXT}},
    },
    ("get", "/api/v1/public/reports/{code}/pdf", "200"): {
        "description": "The sealed PDF the platform holds, to compare with a paper copy.",
        "headers": _PDF_HEADERS,
        "content": {
            "application/pdf": {"schema": _BINARY, "examples": {"sealed": _SEALED_PDF_EXAMPLE}}
        },
    },
    ("get", "/api/v1/public/reports/{code}/raw/{record_id}", "200"): {
        "description": "The raw data of a test record of the report's chain: its inline JSON "
        "as stored, or the data file it names (checked against its SHA-256).",
        "content": {
            JSON: {
                "schema": {"type": ["object", "array", "string", "number", "boolean", "null"]},
                "example": {"loads_kN": [812.4, 798.1, 825.0], "area_mm2": 22500},
            },
            "application/octet-stream": {"schema": _BINARY},
        },
    },
    ("get", "/api/v1/public/reports/{code}/images/{sha256}", "200"): {
        "description": "A key image of the report's chain as the page shows it: JPEG, at "
        "most 1024 px, no EXIF; the original's SHA-256 in `X-Original-SHA256`.",
        "headers": {
            "X-Original-SHA256": {
                "description": "SHA-256 of the stored original (as in the media record)",
                "schema": _TEXT,
                "example": "3f0c5a2e9b7d4c1a8e6f2b0d9c7a5e3f1b9d7c5a3e1f0b8d6c4a2e0f9b7d5c3a",
            }
        },
        "content": {
            "image/jpeg": {
                "schema": _BINARY,
                "examples": {
                    "photo": _named(
                        "A sampling photo (binary, abbreviated)",
                        "\xff\xd8\xff\xdb … JPEG data …",
                    )
                },
            }
        },
    },
    ("get", "/api/v1/reports/{code}/pdf", "200"): {
        "description": "The sealed (QR-stamped, PAdES-signed) report PDF.",
        "headers": _PDF_HEADERS,
        "content": {
            "application/pdf": {"schema": _BINARY, "examples": {"sealed": _SEALED_PDF_EXAMPLE}}
        },
    },
    ("get", "/metrics", "200"): {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": _TEXT, "example": _METRICS_EXAMPLE}},
    },
    ("get", "/ca/roots.pem", "200"): {
        "description": "PEM certificates a verifier should trust for the platform's report "
        "signatures and time-stamps (same as `jianzheng ca roots`).",
        "content": {"application/x-pem-file": {"schema": _TEXT, "example": _ROOTS_PEM_EXAMPLE}},
    },
    ("get", "/ca/root.crl", "200"): {
        "description": "The development root's CRL (DER), named in every certificate it issues.",
        "content": {
            "application/pkix-crl": {
                "schema": _BINARY,
                "examples": {
                    "crl": _named(
                        "A DER CertificateList (binary, abbreviated)",
                        "30 82 01 05 30 81 ac 02 01 01 30 0a 06 08 2a 86 48 ce 3d 04 03 02 …",
                        "Decode with `openssl crl -inform DER -in root.crl -noout -text`.",
                    )
                },
            }
        },
    },
    ("post", "/tsa", "200"): {
        "description": "An RFC 3161 TimeStampResp (DER), signed by the development TSA; a "
        "malformed query gets a signed rejection (PKIStatus), as RFC 3161 §2.4.2 asks.",
        "content": {
            "application/timestamp-reply": {
                "schema": _BINARY,
                "examples": {
                    "granted": _named(
                        "A granted time-stamp (binary, shown base64 and abbreviated)",
                        "MIIHADADAgEAMIIG9wYJKoZIhvcNAQcCoIIG6DCCBuQCAQMxDzANBglghkgBZQME…",
                        "Inspect with `openssl ts -reply -in reply.tsr -text`.",
                    )
                },
            }
        },
    },
    ("get", "/api/v1/audit/reports/{code}/bundle", "200"): {
        "description": "The evidence bundle (`jianzheng-bundle/1`, INTERFACE.md §3): a ZIP "
        "with `manifest.json` (format, code, report_record_id, one proof per record of "
        "the report's ancestry, revocation) and `files/<sha256>` for every file a record "
        "names. Check it offline with `jianzheng-verify BUNDLE.zip --rpc URL`.",
        "headers": {
            "Content-Disposition": {
                "schema": _TEXT,
                "example": f'attachment; filename="jianzheng-bundle-{CODE}.zip"',
            },
            "Content-Length": {"schema": {"type": "integer"}, "example": 113587},
        },
        "content": {
            "application/zip": {
                "schema": _BINARY,
                "examples": {
                    "bundle": _named(
                        "The bundle (binary ZIP; its entries shown)",
                        "manifest.json\n"
                        f"files/{ORIGINAL_SHA256}\n"
                        f"files/{SEALED_SHA256}\n"
                        "files/df0f4970967596ac72ee434addacfcc0e42bfda6e0153e024f93e2d2a372bd0c\n"
                        "…",
                    )
                },
            }
        },
    },
    ("get", "/api/v1/audit/reports/{code}/bundle", "202"): {
        "description": "Parts of the report are not anchored yet: ask again later.",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before asking again",
                "schema": {"type": "integer"},
                "example": 2,
            }
        },
    },
    ("head", "/api/v1/uploads/{upload_id}", "200"): {
        "description": "The upload's current offset, in headers (no body). A dropped "
        "connection loses only the chunk in flight: resume at `Upload-Offset`.",
        "headers": {
            "Upload-Offset": _UPLOAD_OFFSET_HEADER,
            "Upload-Length": {
                "description": "the declared total length",
                "schema": {"type": "integer"},
                "example": 1000,
            },
            "Cache-Control": {"schema": _TEXT, "example": "no-store"},
        },
        "content": None,
    },
    ("patch", "/api/v1/uploads/{upload_id}", "204"): {
        "description": "The chunk was appended (no body).",
        "headers": {"Upload-Offset": {**_UPLOAD_OFFSET_HEADER, "description": "the new offset"}},
    },
    ("post", "/api/v1/uploads", "201"): {
        "headers": {
            "Location": {
                "description": "the upload's URL (PATCH chunks to it)",
                "schema": _TEXT,
                "example": f"/api/v1/uploads/{UPLOAD_ID}",
            }
        }
    },
}

RESPONSE_OVERRIDES.update(OFFLINE_OVERRIDES)

# --------------------------------------------------------------------------- request bodies

#: Encodings of multipart parts, by (method, path).
MULTIPART_ENCODINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/public/verify"): {
        "file": {"contentType": "application/pdf, image/jpeg, image/png, image/*"}
    },
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
                _operation(path, method, op, max_pdf_bytes)

    _drop_unused_schemas(doc, ("HTTPValidationError", "ValidationError"))
    return doc


def _operation(path: str, method: str, op: dict[str, Any], max_pdf_bytes: int | None) -> None:
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
    encoding = MULTIPART_ENCODINGS.get((method, path))
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
        if (method, path, param.get("in"), name) == (
            "patch", "/api/v1/uploads/{upload_id}", "header", "Upload-Offset"
        ):
            param["required"] = True
            param["description"] = (
                "the current offset of the upload (HEAD tells it); 409 "
                "`upload_offset_mismatch` otherwise"
            )
            param["schema"] = {"type": "string", "pattern": "^[0-9]{1,19}$"}
            param["example"] = "0"


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
