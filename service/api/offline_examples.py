"""OpenAPI examples of the signed-QR and certificate routes (service/api/offline.py,
service/api/certificate.py), merged into `openapi.RESPONSE_EXAMPLES`. The trust list and
payload are real output of signer.qrkeys (a development CA)."""

from __future__ import annotations

from typing import Any

CODE = "44030026ENEEHLMLXLK"
TRUST_LIST: dict[str, Any] = {
    "format": "jianzheng-trust/1",
    "issued_at": 1796166408,
    "issuer": "CN=Jianzheng Development Root CA,O=Jianzheng,C=CN",
    "keys": [
        {
            "kid": "84da3149e8a0097e",
            "alg": "ES256",
            "certificate": "MIICTTCCAfOgAwIBAgIUI4/C503dhPpV7AApzQU14qOT0JQwCgYIKoZIzj0EAwIwSTELMAkGA1UEBhMCQ04xEjAQBgNVBAoMCUppYW56aGVuZzEmMCQGA1UEAwwdSmlhbnpoZW5nIERldmVsb3BtZW50IFJvb3QgQ0EwHhcNMjYxMjAxMjIwNjQ4WhcNMzExMTMwMjMwNjQ4WjBLMQswCQYDVQQGEwJDTjESMBAGA1UECgwJSmlhbnpoZW5nMSgwJgYDVQQDDB9KaWFuemhlbmcgUVIgc2lnbmluZyAyMDI2LTEyLTAxMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+PolK7R/+nhTleSkPktY/hCL/y9ehVN7QUFr8Ce0taz7Fp298T2EvTJSqmE0EVR2GxwOP2HvMRzmq+4XEtL8NqOBtjCBszAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIGwDAdBgNVHQ4EFgQUiwx3jEjP1AHnsXzb4ohmuhinnX4wHwYDVR0jBBgwFoAUqqefCx25LKVzbKV6xpiRtJk/uI0wMgYDVR0fBCswKTAnoCWgI4YhaHR0cDovLzEyNy4wLjAuMTo4MDAwL2NhL3Jvb3QuY3JsMB8GA1UdJQQYMBYGFGmBge+2h8LrurWDv7yAk8XKvcIkMAoGCCqGSM49BAMCA0gAMEUCIQDMdfVKdCD5qiV/6emAvTfiQ8uKj3Wsqcz/dW9Mize9WQIgZ8MU0x/DS0cIxbhZd9/p+F+9Y+Q+RdpOCC8vAeBGEB0=",
            "not_before": 1796166408,
            "not_after": 1953846408
        }
    ],
    "signature": {
        "alg": "ES256",
        "root_id": "336c477b582e2696",
        "value": "RO+N5/kMNeql529H4/+489xigxhPEUNxzq1nGMNRdtMn++owaT6WdxZkNAmmzMxKLdvTqj0yrk6oVJssSepWZA=="
    }
}
_HTML = {"type": "string"}
_BINARY = {"type": "string", "format": "binary"}


def _named(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


OFFLINE_EXAMPLES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("get", "/ca/trust-list.json", "200"): {
        "examples": {"one_key": _named("One signing key", TRUST_LIST)},
    },
    ("get", "/api/v1/public/reports/{code}/qr/{payload}", "200"): {
        "examples": {"valid": _named(
            "A payload that verifies and matches the platform's record",
            {
                "parsed": True, "signature_ok": True, "facts_match": True,
                "kid": TRUST_LIST["keys"][0]["kid"],
                "facts": {"code": CODE, "report_no": "SZJC-2026-000123",
                          "institution": "91440300MA5EXXXXXX", "conclusion": "pass",
                          "issued_on": "2026-11-22", "original_sha256": "9f2c" * 16,
                          "sealed_at": TRUST_LIST["keys"][0]["not_before"] + 5},
                "matches": {k: True for k in ("code", "report_no", "institution",
                            "conclusion", "issued_on", "original_sha256", "sealed_at")},
                "checks": [
                    {"name": "qr_url", "ok": True, "detail": "the URL names the signed code"},
                    {"name": "qr_key", "ok": True, "detail": "key … (ES256) is in the trust list"},
                    {"name": "qr_signature", "ok": True, "detail": "ES256 signature verifies"},
                    {"name": "qr_window", "ok": True, "detail": "sealed at …, within the key's window"},
                ],
                "problem": None,
            })},
    },
}

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
