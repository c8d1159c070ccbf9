"""Writes tests/vectors/signing_sm3.json: the request-signing vectors of
tests/vectors/signing.json (the same requests) for a key issued for JZ1-HMAC-SM3
(INTERFACE §7.7: SM3 for the body hash and the HMAC, everything else as §5.1).

    .venv/bin/python scripts/make_signing_vectors.py

The values are computed with the `cryptography` package's SM3 (not service.client), and
tests/test_signing_sm3.py checks them against service.client and the running server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.client import canonical_query  # noqa: E402  (the canonical query is §5.1's)

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"
KEY_ID = "jzl_sm3_00112233445566"
SECRET = "s3cr3t-SM3-Vector_Key-0123456789abcdefghijkl"


def sm3_hex(data: bytes) -> str:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex()


def hmac_sm3_hex(key: bytes, data: bytes) -> str:
    mac = hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize().hex()


def main() -> int:
    base = json.loads((VECTORS / "signing.json").read_text("utf-8"))
    out = []
    for v in base["vectors"]:
        body = v["body"].encode("utf-8")
        body_hash = sm3_hex(body)
        text = "\n".join([
            "JZ1-HMAC-SM3", v["method"].upper(), v["path"], canonical_query(v["query"]),
            v["timestamp"], v["nonce"], body_hash,
        ])
        out.append({
            "description": v["description"],
            "method": v["method"],
            "path": v["path"],
            "query": v["query"],
            "body": v["body"],
            "body_sm3": body_hash,
            "timestamp": v["timestamp"],
            "nonce": v["nonce"],
            "canonical_query": canonical_query(v["query"]),
            "string_to_sign": text,
            "signature": hmac_sm3_hex(SECRET.encode("utf-8"), text.encode("utf-8")),
        })
    doc = {
        "format": "jianzheng-signing-vectors/1",
        "algorithm": "JZ1-HMAC-SM3",
        "key_id": KEY_ID,
        "secret": SECRET,
        "note": base["note"] + "; SM3 per GB/T 32905, HMAC per RFC 2104 over SM3",
        "vectors": out,
    }
    (VECTORS / "signing_sm3.json").write_text(
        json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
