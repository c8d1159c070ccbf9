"""OpenAPI descriptions of the non-JSON answers of the signed-QR and certificate routes
(service/api/offline.py, service/api/certificate.py); their JSON examples are in
service/api/openapi_examples.json."""

from __future__ import annotations

from typing import Any

_HTML = {"type": "string"}
_BINARY = {"type": "string", "format": "binary"}


def _named(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


#: Descriptions and non-JSON bodies, merged into `openapi.RESPONSE_OVERRIDES`.
OFFLINE_OVERRIDES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("get", "/ca/trust-list.json", "200"): {
        "description": "The QR-signing keys (jianzheng-trust/1) with their windows; "
        "`signature.value` is ES256 (r‖s, base64) by the root `signature.root_id` over the "
        "RFC 8785 JSON of the document without `signature` (docs/offline-qr.md).",
    },
    ("get", "/v/{code}/{payload}", "200"): {
        "description": "The page of `/v/{code}` with a `#qr-check` section: "
        "`data-signature=ok|bad`, `data-facts=match|differ`, one `data-fact` per signed fact.",
        "content": {"text/html": {"schema": _HTML, "example": "<!doctype html>…"
                    "<section class=\"card\" id=\"qr-check\" data-signature=\"ok\" "
                    "data-facts=\"match\">…"}},
    },
    ("get", "/v/{code}/{payload}", "404"): {
        "description": "A code the platform never issued: the page of `/v/{code}` saying "
        "未找到 (`data-status=\"unknown\"`), with the payload's own check beside it.",
        "content": {"text/html": {"schema": _HTML}},
    },
    ("get", "/offline/", "200"): {
        "description": "The offline verifier (web app; service worker at /offline/sw.js).",
        "content": {"text/html": {"schema": _HTML, "example": "<!doctype html>…离线验真…"}},
    },
    ("get", "/api/v1/reports/{code}/certificate", "200"): {
        "description": "The evidence certificate (存证证书): A4, Chinese, PAdES-sealed by the "
        "platform (docs/certificate.md).",
        "content": {"application/pdf": {"schema": _BINARY, "examples": {"pdf": _named(
            "A sealed PDF (binary, abbreviated)", "%PDF-1.4 … %%EOF")}}},
    },
}
