"""The OpenAPI document at `/openapi.json` (and `/docs`), completed where routes cannot say it.

`install_openapi(app)` (called by `create_app`) replaces `app.openapi` with a cached
wrapper around FastAPI's own generator; `customise_openapi` then, on a copy:

- declares the request signing (INTERFACE.md §5.1, docs/signing.md) as four apiKey
  header schemes, required together by every `/api/v1/` operation except `/api/v1/public/`;
- adds the optional `Idempotency-Key` header (§5.2) to every signed POST and PUT;
- documents the request bodies routes read themselves (sealing PDF, upload chunks,
  time-stamp queries) and adds examples to the multipart ones;
- gives every 2xx answer an example (`RESPONSE_EXAMPLES`), documents the non-JSON answers
  (HTML page, PDFs, PEM, CRL, time-stamp replies, bundle ZIP, metrics, upload headers);
- gives every operation one entry per error status it can answer, each listing the problem
  codes of that status with an example (service/api/answers.py), in place of FastAPI's
  generic 422 body; tests/test_zz_documented_answers.py checks every answer the suite saw;
- moves `$defs` of inline schemas into `components/schemas`, so every `$ref` resolves.

The JSON examples are real answers captured from one run of the whole flow (lab records,
report code, metadata, sealed PDF, supersession, anchoring on the dev chain), trimmed where
long; they describe one consistent world: lab `91440300MA0000001L`, project
`01M82ER52Y8N72FX8022AC8EFW`, report `44030026ENEEHLMLXLK` (genuine, sealed, anchored),
report `44030026PLBAQTTPYIR` (failed, superseded by `4403002622DOAHF7M5R`).
`tests/test_openapi.py` validates every JSON example against its schema.
"""

from __future__ import annotations

import copy
import logging
import threading
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from service.api import answers
from service.api.offline_examples import OFFLINE_EXAMPLES, OFFLINE_OVERRIDES
from service.api.problems import PROBLEM_JSON, STATUS_BY_CODE
from service.client import HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP

log = logging.getLogger(__name__)

SIGNED_PREFIX = "/api/v1/"
PUBLIC_PREFIX = "/api/v1/public/"
JSON = "application/json"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def is_signed_path(path: str) -> bool:
    """Whether calls to `path` are signed (§5.1): all of `/api/v1/` but `/api/v1/public/`."""
    return path.startswith(SIGNED_PREFIX) and not path.startswith(PUBLIC_PREFIX)


# --------------------------------------------------------------------------- security

_SEE_SIGNING = "See docs/signing.md (INTERFACE.md §5.1)."

#: Scheme name -> apiKey scheme. An operation requires all four together.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "JZKey": {
        "type": "apiKey",
        "in": "header",
        "name": HEADER_KEY,
        "description": "The key id the platform issued (`jzl_…` for labs, `jza_…` for "
        f"auditors). {_SEE_SIGNING}",
    },
    "JZTimestamp": {
        "type": "apiKey",
        "in": "header",
        "name": HEADER_TIMESTAMP,
        "description": "Unix seconds, decimal; refused (401 `auth_expired`) when more than "
        f"300 s from the server clock. {_SEE_SIGNING}",
    },
    "JZNonce": {
        "type": "apiKey",
        "in": "header",
        "name": HEADER_NONCE,
        "description": "16–64 characters of `[A-Za-z0-9_-]`, new for every request "
        f"(a nonce seen again is 401 `auth_replayed`). {_SEE_SIGNING}",
    },
    "JZSignature": {
        "type": "apiKey",
        "in": "header",
        "name": HEADER_SIGNATURE,
        "description": "Lowercase hex HMAC-SHA256, keyed with the UTF-8 bytes of the "
        "secret, of seven lines joined by `\\n`: `JZ1-HMAC-SHA256`, the method in upper "
        "case, the path as sent (no query), the canonical query (empty line if none), the "
        "X-JZ-Timestamp value, the X-JZ-Nonce value, and the lowercase hex SHA-256 of the "
        "body bytes as sent. The page cannot compute it for you: sign with "
        "`service.client.JianzhengClient` or per docs/signing.md (test vectors included).",
    },
}
SIGNED_SECURITY: list[dict[str, list[str]]] = [{name: [] for name in SECURITY_SCHEMES}]

IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": "Optional retry key (INTERFACE.md §5.2), 1–255 visible ASCII characters, "
    "scoped to your institution: the same key with the same request returns the first "
    f"answer again (with `{REPLAYED_HEADER}: true`); with another request, 422 "
    "`idempotency_mismatch`. Only successful answers are kept (24 h). Not signed.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "example": "bg-2026-000123-issue",
}

_REPLAYED_RESPONSE_HEADER: dict[str, Any] = {
    "description": "`true` when this is the stored answer to an earlier request with the "
    "same Idempotency-Key",
    "schema": {"type": "string", "enum": ["true"]},
}

# --------------------------------------------------------------------------- schemas

_HEX64: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ULID: dict[str, Any] = {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"}

#: Schemas this module adds to components/schemas.
EXTRA_SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "title": "Problem",
        "description": "RFC 9457 problem details with a stable `code` (INTERFACE.md §5).",
        "type": "object",
        "required": ["type", "title", "status", "code", "detail"],
        "properties": {
            "type": {"type": "string", "description": "always `about:blank`"},
            "title": {"type": "string", "description": "the HTTP reason phrase"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "code": {"type": "string", "description": "stable machine-readable code"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "validation errors (422 `validation_error`, …)",
                "items": {
                    "type": "object",
                    "required": ["loc", "msg", "type"],
                    "properties": {
                        "loc": {"type": "array", "items": {"type": "string"}},
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
        },
    },
    "Proof": {
        "title": "Proof",
        "description": "Inclusion proof of one record, `jianzheng-proof/1` (INTERFACE.md §3): "
        "the record, its leaf hash, the RFC 6962 audit path (leaf side first) to the batch "
        "root, and the transaction that anchored the root.",
        "type": "object",
        "required": ["format", "record", "leaf_hash", "batch", "anchor"],
        "properties": {
            "format": {"type": "string", "const": "jianzheng-proof/1"},
            "record": {
                "type": "object",
                "description": "the evidence record (INTERFACE.md §1)",
                "required": ["type", "v", "id", "institution", "created_at", "parents", "body"],
            },
            "leaf_hash": _HEX64,
            "batch": {
                "type": "object",
                "required": ["seq", "tree_size", "leaf_index", "root", "path"],
                "properties": {
                    "seq": {"type": "integer", "minimum": 1},
                    "tree_size": {"type": "integer", "minimum": 1},
                    "leaf_index": {"type": "integer", "minimum": 0},
                    "root": _HEX64,
                    "path": {"type": "array", "items": _HEX64},
                },
            },
            "anchor": {
                "type": "object",
                "required": ["chain_id", "registry", "tx_hash", "block_number", "block_timestamp"],
                "properties": {
                    "chain_id": {"type": "integer"},
                    "registry": {"type": "string", "description": "0x-prefixed address"},
                    "tx_hash": {"type": "string", "pattern": "^0x[0-9a-f]{64}$"},
                    "block_number": {"type": "integer"},
                    "block_timestamp": {"type": "integer", "description": "Unix seconds"},
                },
            },
        },
    },
    "PublicReport": {
        "title": "PublicReport",
        "description": "What the verification page shows, as JSON: status, the report "
        "summary with personal data masked, the signature check, the anchor, revocation "
        "and the traceable chain with a check per record.",
        "type": "object",
        "required": ["code", "code_display", "verify_url", "status", "report", "chain"],
        "properties": {
            "code": {"type": "string"},
            "code_display": {"type": "string"},
            "verify_url": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["genuine", "revoked", "superseded", "pending_anchor", "tampered"],
            },
            "status_text": {"type": "object"},
            "report": {"type": ["object", "null"]},
            "signature": {"type": ["object", "null"]},
            "sealed_pdf": {"type": ["object", "null"]},
            "anchor": {"type": ["object", "null"]},
            "revocation": {"type": ["object", "null"]},
            "superseded_by": {"type": ["object", "null"]},
            "problem": {"type": ["object", "null"]},
            "chain": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["record_id", "type", "leaf_hash", "check"],
                    "properties": {
                        "record_id": _ULID,
                        "type": {"type": "string"},
                        "leaf_hash": _HEX64,
                        "check": {"type": "string"},
                    },
                },
            },
        },
    },
    "BundlePending": {
        "title": "BundlePending",
        "description": "Parts of the report are not anchored yet (or its revocation is not "
        "on the chain yet); ask again after `Retry-After` seconds.",
        "type": "object",
        "required": ["status", "code", "pending", "retry_after_s"],
        "properties": {
            "status": {"type": "string", "const": "pending"},
            "code": {"type": "string"},
            "detail": {"type": "string"},
            "pending": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["record_id", "type", "reason"],
                    "properties": {
                        "record_id": _ULID,
                        "type": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
            },
            "retry_after_s": {"type": "integer", "minimum": 1},
        },
    },
}

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

# --------------------------------------------------------------------------- the example world

INSTITUTION = "91440300MA0000001L"
LAB_NAME = "深圳市某检测有限公司"
BASE_URL = "https://jz.example.gov.cn"
CODE = "44030026ENEEHLMLXLK"
CODE_PRINTED = "440300-26-ENEEH-LMLXL-K"
CODE_FAILED = "44030026PLBAQTTPYIR"
CODE_SUCCESSOR = "4403002622DOAHF7M5R"
PROJECT_ID = "01M82ER52Y8N72FX8022AC8EFW"
CONTRACT_ID = "01M82ER5CGKDJJCM1M5TF9X72G"
SAMPLE_ID = "01M82ER5DJJB6T269M3NA8KNZP"
RECEIPT_ID = "01M82ER5HHNG55JT0W98WVQBEA"
TEST_RECORD_ID = "01M82ER5HYWA3PYYQVE9458HE1"
ISSUE_RECORD_ID = "01M82ER5KRDTG1N37AYDS4BZKB"
METADATA_RECORD_ID = "01M82ER5MW1BV93E8Q53K66MKV"
PDF_RECORD_ID = "01M82ER66XSCGFTY1A43V88M2P"
UPLOAD_ID = "01M82ER6D5F66BYQGH6EYFX6ZQ"
WITNESS_KEY_ID = "01M82ER5FSC1MY744D4WMSBRMR"
SEALED_SHA256 = "5dd1a87ba90a7b42874eeadc2aa00894196b9e78c20d10759ec9761601e0e91e"
ORIGINAL_SHA256 = "115da9f1a28e7afbd4ba5fbc59f0f730e1eb5eacefcaf67b56e122e992b0d491"
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TX_HASH = "0x204e6b9ef778e9dd0661949b05a58407644135e8f4939f39bd55d744c62ff214"

#: Example values of path and query parameters, by name.
PARAMETER_EXAMPLES: dict[str, Any] = {
    "code": CODE_PRINTED,
    "record_id": TEST_RECORD_ID,
    "upload_id": UPLOAD_ID,
    "key_id": WITNESS_KEY_ID,
    "institution": INSTITUTION,
}


def _record_out(record_id: str, leaf_hash: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "leaf_hash": leaf_hash,
        "type": type_,
        "created_at": "2026-11-22T20:21:50Z",
        **extra,
    }


_CONTRACT_LATE = {
    "due_by": "2026-11-13",
    "limit_working_days": 5,
    "received_on": "2026-11-23",
    "rule": "contract_late",
    "signed_on": "2026-11-08",
    "working_days": 11,
}
_SEAL_CHECK = {
    "checks": {
        "record_intact": True,
        "sample_code_matches": True,
        "seal_intact": True,
        "signature_valid": True,
    },
    "failed": [],
    "result": "pass",
}
_TEST_RECORD = {
    "body": {
        "acquisition": "auto",
        "device": {"id": "YJ-2000-07", "name": "压力试验机"},
        "finished_at": "2026-11-22T20:20:50Z",
        "flags": [],
        "raw_data": {"area_mm2": 22500, "loads_kN": [812.4, 798.1, 825]},
        "results": {"strength_MPa": 36.1},
        "standard": "GB/T 50081-2019",
        "started_at": "2026-11-22T20:10:50Z",
        "test_item": "混凝土抗压强度",
        "tester": "王五",
    },
    "created_at": "2026-11-22T20:21:50Z",
    "files": [],
    "id": TEST_RECORD_ID,
    "institution": INSTITUTION,
    "parents": [
        "7cf7f4192adfbc66285993d0974b047367e568611bc2d862c5637790af47dee4",
        "24e3a1052e26d1b685041149c44453133fe0bc67fe165e704e0fe83557651a2a",
    ],
    "type": "test_record",
    "v": 1,
}
_TEST_RECORD_LEAF = "d551d0702c336d861de3c9fd9826c6e168b60005c7e9b03f8fea189a14b6e6f7"
_CONTRACT_RECORD = {
    "body": {
        "contract_no": "HT-2026-0183",
        "flags": [_CONTRACT_LATE],
        "parties": [
            {"name": "深圳湾建设有限公司", "role": "client"},
            {"name": LAB_NAME, "role": "lab"},
        ],
        "signed_on": "2026-11-08",
    },
    "created_at": "2026-11-22T20:21:50Z",
    "files": [
        {
            "media_type": "application/pdf",
            "role": "contract_pdf",
            "sha256": "df0f4970967596ac72ee434addacfcc0e42bfda6e0153e024f93e2d2a372bd0c",
            "size": 14656,
        }
    ],
    "id": CONTRACT_ID,
    "institution": INSTITUTION,
    "parents": ["3c18352453d92067e3c1c1a1a42d12d9cf95d4cb6a8e2168b4689aaeeec25d8b"],
    "type": "contract",
    "v": 1,
}
_CONTRACT_LEAF = "aed8d4145b797bf4431f4953a77d6c29580c99f8caaaec9b20aaf31150b1d420"

_CODE_ISSUED = {
    "code": CODE,
    "verify_url": f"{BASE_URL}/v/{CODE}",
    "record_id": ISSUE_RECORD_ID,
    "leaf_hash": "06b337b0da1877248296d66ed0c4ce85bc2d4412de8c60febce4e44e3a459aeb",
    "report_no": "BG-2026-000123",
    "year": 2026,
}
_CODE_STATE_SEALED = {
    "code": CODE,
    "printed": CODE_PRINTED,
    "verify_url": f"{BASE_URL}/v/{CODE}",
    "institution": INSTITUTION,
    "year": 2026,
    "report_no": "BG-2026-000123",
    "status": "reported",
    "issued_at": "2026-11-22T20:21:50Z",
    "sealed_at": "2026-11-22T20:21:51Z",
    "project_record_id": PROJECT_ID,
    "issue_record_id": ISSUE_RECORD_ID,
    "report_record_id": METADATA_RECORD_ID,
    "pdf_record_id": PDF_RECORD_ID,
    "revocation_record_id": None,
    "superseded_by": None,
}
_CODE_STATE_SUPERSEDED = {
    "code": CODE_FAILED,
    "printed": "440300-26-PLBAQ-TTPYI-R",
    "verify_url": f"{BASE_URL}/v/{CODE_FAILED}",
    "institution": INSTITUTION,
    "year": 2026,
    "report_no": "BG-2026-000124",
    "status": "superseded",
    "issued_at": "2026-11-22T20:21:51Z",
    "sealed_at": None,
    "project_record_id": PROJECT_ID,
    "issue_record_id": "01M82ER68FGNQMKR6DFRDFD5Y1",
    "report_record_id": "01M82ER68ZN7G386BEF9K90NQ1",
    "pdf_record_id": None,
    "revocation_record_id": "01M82ER6A087A8GZNXATZA791C",
    "superseded_by": CODE_SUCCESSOR,
}
_WITNESS_KEY = {
    "key_id": WITNESS_KEY_ID,
    "algorithm": "ed25519",
    "public_key": "MCowBQYDK2VwAyEASsqJl/WXZvn+GID1mAq7GVCc5ut0xLH/vRmyAZ4+qq4=",
    "fingerprint": "ec7c3d632da2a1919a0f177d6007d72fc1bbe12da90c816e3bce719c00d203d5",
    "witness": {"name": "张三", "id_number": "110***********002X", "unit": "鹏城监理有限公司"},
    "created_at": "2026-11-22T20:21:50Z",
    "revoked": False,
}
_WITNESS_KEY_REVOKED = {
    "key_id": "01M82ER5K2FTT3HX7YEK9XZ11W",
    "algorithm": "ecdsa-p256",
    "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEHHFEdcFxhLDNNPSyvUmculg45sdBszmtP5fx"
    "SZ8dfPx5lORfwYJT3Cxl7geMt3OHI+AfQPQ5cl1VnOHapmTPSg==",
    "fingerprint": "16d85750210ab95e05be1068ca565681a5a2b7500be97c338f8eeda65fbbb1ce",
    "witness": {"name": "李娜", "id_number": "110***********002X", "unit": "鹏城监理有限公司"},
    "created_at": "2026-11-22T20:21:50Z",
    "revoked": True,
}
_FLAG = {
    "id": 1,
    "record_id": CONTRACT_ID,
    "record_type": "contract",
    "institution": INSTITUTION,
    "rule": "contract_late",
    "detail": _CONTRACT_LATE,
    "flagged_at": "2026-11-22T20:21:50Z",
}
_WARNING = {
    "id": 12,
    "report_code": CODE_FAILED,
    "institution": INSTITUTION,
    "region": "440300",
    "code": "custody_receipt_missing",
    "record_id": SAMPLE_ID,
    "detail": "样品 YP2026112200017 没有收样验封记录",
    "report_record_id": "01M82ER68ZN7G386BEF9K90NQ1",
    "recorded_at": "2026-11-22T20:21:50Z",
}

_OVERDUE = [
    {
        "kind": "receipt",
        "institution": INSTITUTION,
        "sample_record_id": "01M82ER5DJJB6T269M3NA8KNZQ",
        "sample_code": "YP2026110300042",
        "receipt_record_id": None,
        "since": "2026-11-03T02:10:00Z",
        "days_waiting": 19.8,
    },
    {
        "kind": "test_data",
        "institution": INSTITUTION,
        "sample_record_id": SAMPLE_ID,
        "sample_code": "YP2026102000017",
        "receipt_record_id": RECEIPT_ID,
        "since": "2026-10-20T06:30:00Z",
        "days_waiting": 33.6,
    },
]
_LEDGER_ENTRY = {
    "id": 1,
    "institution": INSTITUTION,
    "code": CODE_FAILED,
    "report_record_id": "01M82ER68ZN7G386BEF9K90NQ1",
    "details": {
        "approver": "张三",
        "conclusion": "fail",
        "issued_on": "2026-11-23",
        "report_no": "BG-2026-000124",
    },
    "recorded_at": "2026-11-22T20:21:51Z",
    "notification": {
        "id": "01M82ER6957G3CK3ZQDDQBSYE7",
        "status": "pending",
        "attempts": 0,
        "last_error": None,
        "delivered_at": None,
    },
}


def _upload(offset: int, status: str, sha256: str | None, expires_at: str | None) -> dict[str, Any]:
    return {
        "upload_id": UPLOAD_ID,
        "length": 1000,
        "offset": offset,
        "media_type": "video/mp4",
        "status": status,
        "sha256": sha256,
        "record_id": None,
        "location": f"/api/v1/uploads/{UPLOAD_ID}",
        "expires_at": expires_at,
    }


_PROOF = {
    "format": "jianzheng-proof/1",
    "record": _TEST_RECORD,
    "leaf_hash": _TEST_RECORD_LEAF,
    "batch": {
        "seq": 1,
        "tree_size": 17,
        "leaf_index": 8,
        "root": "ecaad2bc40dddc869734d53e62c6b619ce581bbd47d32885dbe1bc60b874327c",
        "path": [
            "06b337b0da1877248296d66ed0c4ce85bc2d4412de8c60febce4e44e3a459aeb",
            "c865a51dae10713edec31f050c950f4ea788767fe3f9b1de2d0c96fb35e956da",
            "bf15747d469464bf1e394e095e339fa22a06190b298bee8af9afe9fa4ac5a7db",
            "49998c229aeffb4cfb35509307db912bfc9ff83c7d08dd83fdce86fbba68747d",
            "b8070740253c3ecfa0fe5158928593f4c04369be94f39ac874749c7ea21d3161",
        ],
    },
    "anchor": {
        "chain_id": 31337,
        "registry": REGISTRY,
        "tx_hash": TX_HASH,
        "block_number": 3,
        "block_timestamp": 1795378912,
    },
}


def _step(
    record_id: str, type_: str, zh: str, en: str, leaf: str, created_at: str, **details: Any
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "type": type_,
        "step": {"zh": zh, "en": en},
        "created_at": created_at,
        "leaf_hash": leaf,
        "check": "verified",
        "problem": None,
        "batch_seq": 1,
        "details": details,
    }


_T = "2026-11-22T20:21:50Z"
_PUBLIC_GENUINE = {
    "code": CODE,
    "code_display": CODE_PRINTED,
    "verify_url": f"{BASE_URL}/v/{CODE}",
    "status": "genuine",
    "status_text": {"zh": "真实有效", "en": "Genuine"},
    "report": {
        "institution": {"uscc": INSTITUTION, "name": LAB_NAME},
        "report_no": "BG-2026-000123",
        "project": "深圳湾科技园3号楼",
        "conclusion": "pass",
        "issued_on": "2026-11-23",
        "approver": "张*",
        "code_issued_at": "2026-11-22T20:21:50Z",
        "sealed_at": "2026-11-22T20:21:51Z",
    },
    "signature": {
        "checked": True,
        "ok": True,
        "signer": LAB_NAME,
        "signed_at": "2026-11-22T20:21:51Z",
        "timestamped": True,
        "detail": None,
    },
    "sealed_pdf": {"sha256": SEALED_SHA256, "url": f"/api/v1/public/reports/{CODE}/pdf"},
    "anchor": {
        "chain_id": 31337,
        "registry": REGISTRY,
        "batch_seq": 1,
        "root": "ecaad2bc40dddc869734d53e62c6b619ce581bbd47d32885dbe1bc60b874327c",
        "block_number": 3,
        "block_timestamp": 1795378912,
        "time": "2026-11-22T20:21:52Z",
        "tx_hash": TX_HASH,
    },
    "revocation": None,
    "superseded_by": None,
    "problem": None,
    # Trimmed: the real answer lists every record of the report's ancestry (12 here).
    "chain": [
        _step(
            PROJECT_ID, "project", "工程项目", "Project",
            "3c18352453d92067e3c1c1a1a42d12d9cf95d4cb6a8e2168b4689aaeeec25d8b", _T,
            name="深圳湾科技园3号楼", location="深圳市南山区科苑南路",
            builder="深圳湾建设有限公司", supervisor="鹏城监理有限公司", constructor="中建某局",
        ),
        _step(
            SAMPLE_ID, "sample", "样品", "Sample",
            "7cf7f4192adfbc66285993d0974b047367e568611bc2d862c5637790af47dee4", _T,
            sample_code="YP2026112200017", sample_name="混凝土试块",
            specification="C30 混凝土 150mm×150mm×150mm", quantity="3 组",
            sampled_at="2026-11-22T18:21:50Z",
        ),
        _step(
            "01M82ER5H69Q7WD321PR3X8XAB", "witness", "见证记录", "Witness record",
            "7560674be960a926a80b352324ca054441ba723872dcc05378cf6f735db24fa8", _T,
            witness="张*", witness_unit="鹏城监理有限公司",
            witnessed_at="2026-11-22T19:23:30Z", place="22.5431,113.9365 深圳湾科技园3号楼",
            activities=["sampling", "marking", "sealing"],
        ),
        _step(
            TEST_RECORD_ID, "test_record", "检测数据", "Test record", _TEST_RECORD_LEAF, _T,
            test_item="混凝土抗压强度", standard="GB/T 50081-2019",
            device="压力试验机 YJ-2000-07", tested_at="2026-11-22T20:20:50Z", tester="王*",
        ),
        _step(
            PDF_RECORD_ID, "report", "报告签章", "Report sealed",
            "f80793570bd0d409d1334d679575040387fa8aa5c1155b4f2da9ba85ea856b11",
            "2026-11-22T20:21:51Z",
        ),
    ],
}
_PUBLIC_SUPERSEDED = {
    "code": CODE_FAILED,
    "code_display": "440300-26-PLBAQ-TTPYI-R",
    "verify_url": f"{BASE_URL}/v/{CODE_FAILED}",
    "status": "superseded",
    "status_text": {"zh": "已更正", "en": "Superseded"},
    "report": {
        "institution": {"uscc": INSTITUTION, "name": LAB_NAME},
        "report_no": "BG-2026-000124",
        "project": "深圳湾科技园3号楼",
        "conclusion": "fail",
        "issued_on": "2026-11-23",
        "approver": "张*",
        "code_issued_at": "2026-11-22T20:21:51Z",
        "sealed_at": None,
    },
    "signature": None,
    "sealed_pdf": None,
    "anchor": None,
    "revocation": {
        "on_chain": True,
        "revoked_at": "2026-11-22T20:21:51Z",
        "reason": "报告数据录入错误，已重新出具",
        "record_id": "01M82ER6A087A8GZNXATZA791C",
    },
    "superseded_by": {"code": CODE_SUCCESSOR, "url": f"{BASE_URL}/v/{CODE_SUCCESSOR}"},
    "problem": None,
    # Trimmed to the last two steps.
    "chain": [
        _step(
            "01M82ER68ZN7G386BEF9K90NQ1", "report", "报告信息", "Report details",
            "45bc9eaf57f017009368971b8fd36399c8b1af83af885527a30bbb0668db4028",
            "2026-11-22T20:21:51Z", conclusion="fail", issued_on="2026-11-23", approver="张*",
        ),
        _step(
            "01M82ER6A087A8GZNXATZA791C", "revocation", "作废/更正", "Revocation",
            "bb5d5b502c54320d290570598bdd20f8c01c73111da1978f3b654d974bbd4067",
            "2026-11-22T20:21:51Z", reason="报告数据录入错误，已重新出具",
            superseded_by=CODE_SUCCESSOR,
        ),
    ],
}

_BUNDLE_PENDING = {
    "status": "pending",
    "code": CODE,
    "detail": "parts of this report are not anchored on the chain yet; ask again later",
    # Trimmed: every record of the report's ancestry not anchored yet is listed.
    "pending": [
        {
            "record_id": PDF_RECORD_ID,
            "type": "report",
            "reason": "accepted, waiting for the next batch",
        },
        {
            "record_id": METADATA_RECORD_ID,
            "type": "report",
            "reason": "accepted, waiting for the next batch",
        },
        {
            "record_id": TEST_RECORD_ID,
            "type": "test_record",
            "reason": "accepted, waiting for the next batch",
        },
    ],
    "retry_after_s": 2,
}

_NUMBERING = {
    "institution": INSTITUTION,
    "year": 2026,
    "generated_at": "2026-11-22T20:21:51Z",
    "unfinished_after_s": 86400,
    "start": 121,
    "issued": [
        {
            "report_no": "BG-2026-000123",
            "code": CODE,
            "status": "reported",
            "issued_at": "2026-11-22T20:21:50Z",
            "sealed_at": "2026-11-22T20:21:51Z",
        },
        {
            "report_no": "BG-2026-000126",
            "code": CODE_SUCCESSOR,
            "status": "issued",
            "issued_at": "2026-11-22T20:21:51Z",
            "sealed_at": None,
        },
        {
            "report_no": "BG-2026-000124",
            "code": CODE_FAILED,
            "status": "superseded",
            "issued_at": "2026-11-22T20:21:51Z",
            "sealed_at": None,
        },
    ],
    "voided": [
        {
            "report_no": "BG-2026-000125",
            "code": None,
            "reason": "打印错误，编号作废",
            "voided_at": "2026-11-22T20:21:51Z",
            "record_id": "01M82ER6AT0XAQNDPZ9E7W3V92",
        }
    ],
    "unfinished": [],
    "missing": [
        {"series": "BG-2026-{n}", "number": 121, "report_no": "BG-2026-000121"},
        {"series": "BG-2026-{n}", "number": 122, "report_no": "BG-2026-000122"},
    ],
    "series": [
        {
            "series": "BG-2026-{n}",
            "first": 123,
            "last": 126,
            "count": 4,
            "missing_count": 2,
            "missing_truncated": False,
        }
    ],
    "unsequenced": [],
    "counts": {"issued": 3, "voided": 1, "unfinished": 0, "missing": 2},
}

_HEALTHZ = {
    "status": "ok",
    "chain": {"chain_id": 31337, "registry": REGISTRY},
    "anchoring": {
        "pending_leaves": 0,
        "oldest_pending_age_s": 0.0,
        "unconfirmed_batches": 0,
        "last_anchored_seq": 1,
        "anchor_failures": 0,
        "last_error": None,
        "halted": None,
        "worker_heartbeat_age_s": 0.314,
    },
}


def _named(summary: str, value: Any, description: str | None = None) -> dict[str, Any]:
    """An OpenAPI Example Object."""
    example: dict[str, Any] = {"summary": summary, "value": value}
    if description:
        example["description"] = description
    return example


#: (method, path, status) -> {"example": …} or {"examples": {name: Example Object}} for the
#: JSON body of that answer.
RESPONSE_EXAMPLES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("get", "/api/v1/public/reports/{code}", "200"): {
        "examples": {
            "genuine": _named("A genuine report (chain trimmed to five steps)", _PUBLIC_GENUINE),
            "superseded": _named("A report corrected by a new one", _PUBLIC_SUPERSEDED),
        }
    },
    ("post", "/api/v1/public/verify", "200"): {
        "examples": {
            "genuine_pdf": _named(
                "The platform's sealed PDF, byte for byte",
                {
                    "verdict": "genuine",
                    "code": CODE,
                    "status": "genuine",
                    "detail": "byte-identical to the platform's sealed copy",
                },
            ),
            "modified_pdf": _named(
                "Signed by the platform, then changed",
                {
                    "verdict": "modified",
                    "code": CODE,
                    "status": "genuine",
                    "detail": "signed by the platform but not the platform's copy "
                    "(partial_coverage)",
                },
            ),
            "genuine_photo": _named(
                "A photo whose QR code names a genuine report",
                {"verdict": "genuine", "code": CODE, "status": "genuine",
                 "detail": "QR code decoded"},
            ),
            "not_ours": _named(
                "A PDF the platform did not sign",
                {"verdict": "not_ours", "code": None, "status": None,
                 "detail": "not signed by the platform"},
            ),
            "unreadable": _named(
                "An image without a QR code",
                {"verdict": "unreadable", "code": None, "status": None,
                 "detail": "no QR code found"},
            ),
        }
    },
    ("get", "/healthz", "200"): {"example": _HEALTHZ},
    ("post", "/api/v1/report-codes", "201"): {"example": _CODE_ISSUED},
    ("get", "/api/v1/reports/{code}", "200"): {
        "examples": {
            "sealed": _named("Metadata recorded and the PDF sealed", _CODE_STATE_SEALED),
            "superseded": _named("Superseded by a corrected report", _CODE_STATE_SUPERSEDED),
        }
    },
    ("put", "/api/v1/reports/{code}", "200"): {
        "examples": {
            "pass": _named(
                "Conclusion pass",
                {
                    "code": CODE,
                    "record_id": METADATA_RECORD_ID,
                    "leaf_hash": "ef6b42a0c6b60834c3ec61e423ee5e185e34a68939ed19063793e0e25dbc26cb",
                    "status": "reported",
                    "nonconforming": False,
                    "evidence_complete": True,
                    "warnings": [],
                },
            ),
            "fail": _named(
                "Conclusion fail: entered in the nonconforming ledger",
                {
                    "code": CODE_FAILED,
                    "record_id": "01M82ER68ZN7G386BEF9K90NQ1",
                    "leaf_hash": "45bc9eaf57f017009368971b8fd36399c8b1af83af885527a30bbb0668db4028",
                    "status": "reported",
                    "nonconforming": True,
                    "evidence_complete": False,
                    "warnings": [
                        {
                            "code": "custody_receipt_missing",
                            "record_id": SAMPLE_ID,
                            "detail": "样品 YP2026112200017 没有收样验封记录",
                        }
                    ],
                },
            ),
        }
    },
    ("post", "/api/v1/reports/{code}/revocation", "201"): {
        "example": {
            "code": CODE_FAILED,
            "record_id": "01M82ER6A087A8GZNXATZA791C",
            "leaf_hash": "bb5d5b502c54320d290570598bdd20f8c01c73111da1978f3b654d974bbd4067",
            "status": "superseded",
            "superseded_by": CODE_SUCCESSOR,
            "revocation_subject": (
                "6f194b74422d545e4dfceb2ed3caf2c14cda23a8b76a39ffa567a353b89b6c8a"
            ),
        }
    },
    ("post", "/api/v1/numbering/voids", "201"): {
        "example": {
            "record_id": "01M82ER6AT0XAQNDPZ9E7W3V92",
            "leaf_hash": "b8070740253c3ecfa0fe5158928593f4c04369be94f39ac874749c7ea21d3161",
            "year": 2026,
            "report_no": "BG-2026-000125",
            "code": None,
        }
    },
    ("get", "/api/v1/audit/numbering", "200"): {"example": _NUMBERING},
    ("get", "/api/v1/records/{record_id}/proof", "200"): {"example": _PROOF},
    ("get", "/api/v1/records/{record_id}/proof", "202"): {"example": {"status": "pending"}},
    ("post", "/api/v1/projects", "201"): {
        "example": _record_out(
            PROJECT_ID, "3c18352453d92067e3c1c1a1a42d12d9cf95d4cb6a8e2168b4689aaeeec25d8b",
            "project",
        )
    },
    ("post", "/api/v1/commissions", "201"): {
        "example": _record_out(
            "01M82ER5D2CQY37FEQJ1ZR34TQ",
            "c3f5789e5dbb8c4cfcecf1ddf5229bf3dc2c7457357ca9ad14c1be8883a78444",
            "commission",
        )
    },
    ("post", "/api/v1/samples", "201"): {
        "example": _record_out(
            SAMPLE_ID, "7cf7f4192adfbc66285993d0974b047367e568611bc2d862c5637790af47dee4",
            "sample",
        )
    },
    ("post", "/api/v1/seals", "201"): {
        "example": _record_out(
            "01M82ER5GRHTNRM3WYHPHR0P91",
            "e398c0643d210d1bde24234e621fcaa4f0f5e91f21ba2641c68ad6fe7e2f2c83",
            "seal",
        )
    },
    ("post", "/api/v1/witnesses", "201"): {
        "example": _record_out(
            "01M82ER5H69Q7WD321PR3X8XAB",
            "7560674be960a926a80b352324ca054441ba723872dcc05378cf6f735db24fa8",
            "witness",
        )
    },
    ("post", "/api/v1/receipts", "201"): {
        "example": _record_out(
            RECEIPT_ID, "24e3a1052e26d1b685041149c44453133fe0bc67fe165e704e0fe83557651a2a",
            "receipt", seal_check=_SEAL_CHECK,
        )
    },
    ("post", "/api/v1/test-records", "201"): {
        "example": _record_out(TEST_RECORD_ID, _TEST_RECORD_LEAF, "test_record", flags=[])
    },
    ("post", "/api/v1/test-plans", "201"): {
        "example": _record_out(
            "01M82ER5G4Q7VWK2JX0ND3B8TS",
            "3b8f0d2c6e1a4f5b9c7d2e8a1f0b3c5d7e9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c",
            "test_plan",
            flags=[],
        )
    },
    ("post", "/api/v1/contracts", "201"): {
        "example": _record_out(CONTRACT_ID, _CONTRACT_LEAF, "contract", flags=[_CONTRACT_LATE])
    },
    ("post", "/api/v1/media", "201"): {
        "example": _record_out(
            "01M82ER5E1ZJPWDJ8PNATG34KP",
            "7916ccb18b055e1aca20431318fb2521a6afc7ee0ea97fbaf059d257d1059632",
            "media",
        )
    },
    ("get", "/api/v1/records/{record_id}", "200"): {
        "examples": {
            "test_record": _named(
                "A test record",
                {"record": _TEST_RECORD, "leaf_hash": _TEST_RECORD_LEAF, "flags": []},
            ),
            "late_contract": _named(
                "A contract uploaded too late (flag `contract_late`)",
                {
                    "record": _CONTRACT_RECORD,
                    "leaf_hash": _CONTRACT_LEAF,
                    "flags": [_CONTRACT_LATE],
                },
            ),
        }
    },
    ("post", "/api/v1/witness-keys", "201"): {"example": _WITNESS_KEY},
    ("get", "/api/v1/witness-keys/{key_id}", "200"): {"example": _WITNESS_KEY},
    ("post", "/api/v1/witness-keys/{key_id}/revocation", "200"): {"example": _WITNESS_KEY_REVOKED},
    ("get", "/api/v1/flags", "200"): {"example": [_FLAG]},
    ("get", "/api/v1/audit/flags", "200"): {"example": [_FLAG]},
    ("get", "/api/v1/warnings", "200"): {"example": [_WARNING]},
    ("get", "/api/v1/audit/warnings", "200"): {"example": [_WARNING]},
    ("get", "/api/v1/overdue", "200"): {"example": _OVERDUE},
    ("get", "/api/v1/audit/overdue", "200"): {"example": _OVERDUE},
    ("get", "/api/v1/nonconforming", "200"): {"example": [_LEDGER_ENTRY]},
    ("get", "/api/v1/audit/nonconforming", "200"): {"example": [_LEDGER_ENTRY]},
    ("post", "/api/v1/uploads", "201"): {
        "example": _upload(0, "open", None, "2026-11-25T20:21:51Z")
    },
    ("get", "/api/v1/uploads/{upload_id}", "200"): {
        "example": _upload(600, "open", None, "2026-11-25T20:21:51Z")
    },
    ("post", "/api/v1/uploads/{upload_id}/complete", "200"): {
        "example": _upload(
            1000, "complete", "8562e7832cdb71ce305f7456feae528fcee48b0e6415046896fcdb29eb30e688",
            None,
        )
    },
    ("put", "/api/v1/reports/{code}/pdf", "200"): {
        "example": {
            "record_id": PDF_RECORD_ID,
            "sha256": SEALED_SHA256,
            "original_sha256": ORIGINAL_SHA256,
        }
    },
    ("get", "/api/v1/audit/reports/{code}/bundle", "202"): {"example": _BUNDLE_PENDING},
    # the console's statistics (docs/console.md)
    ("get", "/api/v1/audit/stats", "200"): {"example": {
        "region": "440300", "dimension": "institution", "period": None, "measure": "total",
        "from": "2026-11-01", "to": "2026-11-30", "institution": None, "test_item": None,
        "totals": {"total": 6, "pass": 4, "fail": 2, "pass_rate": 0.6667},
        "rows": [
            {"key": INSTITUTION, "label": "深圳市某检测有限公司", "total": 4, "pass": 3,
             "fail": 1, "pass_rate": 0.75},
            {"key": "91440300MA5FQ2K3X8", "label": "深圳市另一检测有限公司", "total": 2,
             "pass": 1, "fail": 1, "pass_rate": 0.5},
        ],
    }},
}
# The signed-QR and certificate routes (issue 15): service/api/offline_examples.py
RESPONSE_EXAMPLES.update(OFFLINE_EXAMPLES)

#: Response schemas to use instead of FastAPI's (which has none for these answers).
RESPONSE_SCHEMAS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("get", "/api/v1/public/reports/{code}", "200"): {"$ref": "#/components/schemas/PublicReport"},
    ("get", "/api/v1/records/{record_id}/proof", "200"): {"$ref": "#/components/schemas/Proof"},
    ("get", "/api/v1/audit/reports/{code}/bundle", "202"): {
        "$ref": "#/components/schemas/BundlePending"
    },
}

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

#: (method, path) -> requestBody to set where the route declares none.
REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("put", "/api/v1/reports/{code}/pdf"): {
        "required": True,
        "description": "The report PDF exactly as the lab produced it (`Content-Type: "
        "application/pdf`); the platform stamps the QR code and seal, signs it and stores "
        "both files. Sending the same PDF again answers the first result; another PDF is "
        "409 `already_sealed`.",
        "content": {
            "application/pdf": {
                "schema": _BINARY,
                "examples": {
                    "report": _named(
                        "The lab's report PDF (binary, abbreviated)",
                        "%PDF-1.7\n… the report's pages …\n%%EOF",
                    )
                },
            }
        },
    },
    ("post", "/tsa"): {
        "required": True,
        "description": "An RFC 3161 TimeStampReq (DER, at most 16 KiB), e.g. from "
        "`openssl ts -query -data report.pdf -sha256 -cert -out query.tsq`.",
        "content": {
            "application/timestamp-query": {
                "schema": _BINARY,
                "examples": {
                    "sha256": _named(
                        "A query for a SHA-256 hash with a nonce (binary, shown base64)",
                        _TSA_QUERY_B64,
                        "Send the DER bytes, not the base64 text.",
                    )
                },
            }
        },
    },
}

#: (method, path, media type) -> examples to add to a request body the route declared.
REQUEST_EXAMPLES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("patch", "/api/v1/uploads/{upload_id}", "application/offset+octet-stream"): {
        "chunk": _named(
            "Bytes 0–599 of the file (binary)",
            "… 600 bytes of the file, starting at Upload-Offset: 0 …",
            "Send the raw bytes with `Upload-Offset: 0`; the answer's `Upload-Offset: 600` "
            "is where the next chunk starts.",
        )
    },
    ("post", "/api/v1/public/verify", "multipart/form-data"): {
        "pdf": _named(
            "A PDF copy of the report",
            {"file": "(binary) 44030026ENEEHLMLXLK.pdf, application/pdf"},
        ),
        "photo": _named(
            "A photo of the printed page, with its QR code",
            {"file": "(binary) photo.jpg, image/jpeg"},
        ),
    },
    ("post", "/api/v1/contracts", "multipart/form-data"): {
        "contract": _named(
            "Contract metadata and its signed PDF",
            {
                "meta": '{"contract_no": "HT-2026-0183", "signed_on": "2026-11-20", '
                '"parties": [{"role": "client", "name": "深圳湾建设有限公司"}, '
                f'{{"role": "lab", "name": "{LAB_NAME}"}}], "parents": ["{PROJECT_ID}"]}}',
                "file": "(binary) contract.pdf, application/pdf",
            },
        )
    },
    ("post", "/api/v1/media", "multipart/form-data"): {
        "image": _named(
            "A key image",
            {
                "meta": '{"kind": "image", "description": "取样照片"}',
                "file": "(binary) sampling.jpg, image/jpeg",
            },
        )
    },
    ("post", "/api/v1/reports/{code}/revocation", JSON): {
        "supersede": _named(
            "Superseded by a corrected report",
            {"reason": "报告数据录入错误，已重新出具", "superseded_by": CODE_SUCCESSOR},
        ),
        "revoke": _named("Revoked", {"reason": "委托方撤回委托", "superseded_by": None}),
    },
}

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
    for name, schema in EXTRA_SCHEMAS.items():
        schemas.setdefault(name, copy.deepcopy(schema))
    if "CodeIssued" in schemas:
        # The model's own example predates the real format (check character, leaf hash).
        schemas["CodeIssued"]["examples"] = [copy.deepcopy(_CODE_ISSUED)]
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)

    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method in HTTP_METHODS and isinstance(op, dict):
                _operation(path, method, op, max_pdf_bytes)

    _drop_unused_schemas(doc, ("HTTPValidationError", "ValidationError"))
    return doc


def _operation(path: str, method: str, op: dict[str, Any], max_pdf_bytes: int | None) -> None:
    signed = is_signed_path(path)
    responses: dict[str, Any] = op.setdefault("responses", {})
    params: list[dict[str, Any]] = op.setdefault("parameters", [])

    if signed:
        op["security"] = copy.deepcopy(SIGNED_SECURITY)
        if method in ("post", "put") and not any(
            p.get("in") == "header" and p.get("name", "").lower() == IDEMPOTENCY_HEADER.lower()
            for p in params
        ):
            params.append(copy.deepcopy(IDEMPOTENCY_PARAMETER))
    else:
        op.pop("security", None)
    if not params:
        del op["parameters"]
    _parameters(path, method, params)

    # Request bodies.
    body = REQUEST_BODIES.get((method, path))
    if body is not None and "requestBody" not in op:
        op["requestBody"] = copy.deepcopy(body)
        if max_pdf_bytes and "application/pdf" in body["content"]:
            op["requestBody"]["description"] += f" At most {max_pdf_bytes} bytes."
    content = op.get("requestBody", {}).get("content", {})
    for media_type, media in content.items():
        examples = REQUEST_EXAMPLES.get((method, path, media_type))
        if examples is not None:
            media.setdefault("examples", {}).update(copy.deepcopy(examples))
    encoding = MULTIPART_ENCODINGS.get((method, path))
    if encoding is not None and "multipart/form-data" in content:
        content["multipart/form-data"]["encoding"] = copy.deepcopy(encoding)

    # Answers.
    _problem_answers(path, method, op, responses)
    for (m, p, status), override in RESPONSE_OVERRIDES.items():
        if (m, p) == (method, path):
            _override(responses.setdefault(status, {}), override)
    for status, response in responses.items():
        if "$ref" in response:
            continue
        key = (method, path, status)
        if key in RESPONSE_SCHEMAS:
            media = response.setdefault("content", {}).setdefault(JSON, {})
            media["schema"] = copy.deepcopy(RESPONSE_SCHEMAS[key])
        if key in RESPONSE_EXAMPLES:
            media = response.setdefault("content", {}).setdefault(JSON, {"schema": {}})
            media.update(copy.deepcopy(RESPONSE_EXAMPLES[key]))
        if signed and method in ("post", "put") and status.startswith("2"):
            response.setdefault("headers", {}).setdefault(
                REPLAYED_HEADER, copy.deepcopy(_REPLAYED_RESPONSE_HEADER)
            )
    op["responses"] = dict(sorted(responses.items()))


def _problem_answers(
    path: str, method: str, op: dict[str, Any], responses: dict[str, Any]
) -> None:
    """One entry per error status the operation can give, listing each problem code it can
    answer with that status (service/api/answers.py) with an example of each."""
    validated = False  # FastAPI lists its 422 for every route with parameters or a body
    for status, response in list(responses.items()):
        if status == "422" and _is_fastapi_validation(response):
            del responses[status]
            validated = True
    body = op.get("requestBody", {}).get("content", {})
    codes = answers.problem_codes(
        method,
        path,
        signed=is_signed_path(path),
        public=path.startswith(PUBLIC_PREFIX) or path.startswith("/v/"),
        validated=validated or bool(body),
        json_body=JSON in body,
    )
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    for answer, group in by_status.items():
        entry = responses.setdefault(str(answer), {})
        entry["description"] = "; ".join(f"`{c}`: {answers.MEANING[c]}" for c in group)
        content = entry.setdefault("content", {})
        content[PROBLEM_JSON] = {
            "schema": copy.deepcopy(_PROBLEM_REF),
            "examples": {c: _named(answers.MEANING[c], _problem(answer, c)) for c in group},
        }
        if answer in (429, 503):
            entry.setdefault("headers", {})["Retry-After"] = {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 1},
            }


def _problem(status: int, code: str) -> dict[str, Any]:
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": answers.MEANING[code],
    }
    if code == "validation_error":
        problem["detail"] = "body.report_no: String should have at least 1 character"
        problem["errors"] = [
            {
                "loc": ["body", "report_no"],
                "msg": "String should have at least 1 character",
                "type": "string_too_short",
            }
        ]
    return problem


def _parameters(path: str, method: str, params: list[dict[str, Any]]) -> None:
    for param in params:
        name = param.get("name", "")
        if param.get("in") in ("path", "query") and name in PARAMETER_EXAMPLES:
            example = PARAMETER_EXAMPLES[name]
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


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get(JSON, {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


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
