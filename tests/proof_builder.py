"""Builds real proofs and bundles for tests: records → leaves → RFC 6962 tree → proofs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from eth_abi.abi import encode as abi_encode

from verifier.canonical import canonicalize
from verifier.chain import ANCHORED_TOPIC
from verifier.errors import ChainError
from verifier.merkle import HashAlg, audit_path_from_levels, record_leaf_hash, tree_levels
from verifier.models import AnchorInfo, Log, Receipt, RevocationInfo

REGISTRY = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
OTHER_REGISTRY = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
CHAIN_ID = 31337
CODE = "44030026ABCDEFGHJKLMNP7"
CONTRACT_PDF = b"%PDF-1.7 contract"


def file_sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def ancestry_records(
    pdf: bytes = b"%PDF-1.7 signed report\n", code: str = CODE
) -> list[dict[str, Any]]:
    """project → contract → commission → sample → test_record → report, with parent links."""
    def record(rtype: str, rid: str, parents: list[dict[str, Any]], body: dict[str, Any],
               files: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        return {
            "type": rtype,
            "v": 1,
            "id": rid,
            "institution": "91440300MA5EXXXXXX",
            "created_at": "2026-11-22T10:00:00Z",
            "parents": [record_leaf_hash(p).hex() for p in parents],
            "files": list(files),
            "body": body,
        }

    contract_pdf = CONTRACT_PDF
    project = record("project", "01PROJECT", [], {"name": "深圳湾某住宅项目（一期）"})
    contract = record("contract", "01CONTRACT", [project], {"title": "检测合同"},
                      [{"role": "contract_pdf", "sha256": file_sha(contract_pdf),
                        "size": len(contract_pdf), "media_type": "application/pdf"}])
    commission = record("commission", "01COMMISSION", [contract], {"items": ["抗压强度"]})
    sample = record("sample", "01SAMPLE", [commission], {"sample_code": "YP-2026-0001",
                                                         "strength": 30.5, "ratio": 0.1})
    test_record = record("test_record", "01TEST", [sample], {"value": 1e21, "tiny": 1e-7})
    report = record("report", "01REPORT", [sample, test_record],
                    {"code": code, "conclusion": "pass", "approver": "张三"},
                    # a stand-in file, not a sealed PDF: role `signed_pdf` would (rightly) fail
                    # the sealed-PDF check, exercised on real PDFs in tests/test_e2e_story.py
                    [{"role": "report_pdf", "sha256": file_sha(pdf), "size": len(pdf),
                      "media_type": "application/pdf"}])
    return [project, contract, commission, sample, test_record, report]


def ancestry_files(pdf: bytes) -> dict[str, bytes]:
    """The files ``ancestry_records(pdf)`` names, by SHA-256, as a bundle holds them."""
    return {file_sha(pdf): pdf, file_sha(CONTRACT_PDF): CONTRACT_PDF}


def sealed_report_records(pdf: bytes, code: str) -> list[dict[str, Any]]:
    """``ancestry_records`` whose report names ``pdf`` as its sealed PDF (role ``signed_pdf``,
    PAdES B-T), so the sealed-PDF check verifies it."""
    records = ancestry_records(pdf, code=code)
    report = records[-1]
    report["files"] = [{"role": "signed_pdf", "sha256": file_sha(pdf), "size": len(pdf),
                        "media_type": "application/pdf"}]
    report["body"]["signature_level"] = "B-T"
    return records


def signed_seal_record(sample: dict[str, Any], *, forged: bool = False) -> dict[str, Any]:
    """A seal record of ``sample`` signed by a fresh Ed25519 witness key; ``forged``: the
    signature is over another sealing time than the payload says."""
    key = ed25519.Ed25519PrivateKey.generate()
    code = sample["body"]["sample_code"]
    signed = {"sample_code": code, "sealed_at": "2026-11-22T09:41:00+08:00", "images": []}
    message = {**signed, "sealed_at": "2026-11-23T09:41:00+08:00"} if forged else signed
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"type": "seal", "v": 1, "id": "01SEAL", "institution": sample["institution"],
            "created_at": "2026-11-22T09:42:00Z", "parents": [record_leaf_hash(sample).hex()],
            "files": [],
            "body": {"sample_code": code, "signed": signed,
                     "signature": base64.b64encode(key.sign(canonicalize(message))).decode(),
                     "witness_key": {"algorithm": "ed25519",
                                     "public_key": base64.b64encode(spki).decode()}}}


def build_proofs(
    records: Sequence[dict[str, Any]],
    *,
    seq: int = 1,
    chain_id: int = CHAIN_ID,
    registry: str = REGISTRY,
    tx_hash: str = "0x" + "ab" * 32,
    block_number: int = 42,
    block_timestamp: int = 1_763_805_600,
    alg: HashAlg = "sha256",
) -> tuple[list[dict[str, Any]], bytes]:
    """Proof dicts for all records as one batch, and the batch root (log hash `alg`)."""
    leaves = [record_leaf_hash(r, alg) for r in records]
    levels = tree_levels(leaves, alg)
    root = levels[-1][0]
    proofs = [
        {
            **({"hash": alg} if alg != "sha256" else {}),
            "format": "jianzheng-proof/1",
            "record": r,
            "leaf_hash": leaves[i].hex(),
            "batch": {
                "seq": seq,
                "tree_size": len(leaves),
                "leaf_index": i,
                "root": root.hex(),
                "path": [p.hex() for p in audit_path_from_levels(levels, i)],
            },
            "anchor": {
                "chain_id": chain_id,
                "registry": registry,
                "tx_hash": tx_hash,
                "block_number": block_number,
                "block_timestamp": block_timestamp,
            },
        }
        for i, r in enumerate(records)
    ]
    return proofs, root


def anchored_log(registry: str, seq: int, root: bytes, leaf_count: int, timestamp: int) -> Log:
    return Log(
        address=registry,
        topics=(ANCHORED_TOPIC, seq.to_bytes(32, "big"), root),
        data=abi_encode(["uint64", "uint64"], [leaf_count, timestamp]),
    )


class FakeChain:
    """In-memory BundleChainSource for unit tests of the pure verification logic."""

    def __init__(self, chain_id: int = CHAIN_ID) -> None:
        self._chain_id = chain_id
        self.anchors: dict[tuple[str, bytes], AnchorInfo] = {}
        self.receipts: dict[str, Receipt] = {}
        self.revocations: dict[tuple[str, bytes], RevocationInfo] = {}
        #: batchCount per registry: the highest seq anchored there (or set by a test).
        self.batch_counts: dict[str, int] = {}
        self.down = False
        self.calls = 0

    def _touch(self) -> None:
        self.calls += 1
        if self.down:
            raise ChainError("cannot reach http://127.0.0.1:9 (test): refused",
                             code="chain_unreachable")

    def anchor(self, proof: dict[str, Any]) -> None:
        """Record the anchor a proof claims, as the registry would."""
        b, a = proof["batch"], proof["anchor"]
        root = bytes.fromhex(b["root"])
        self.batch_counts[a["registry"]] = max(self.batch_counts.get(a["registry"], 0), b["seq"])
        self.anchors[(a["registry"], root)] = AnchorInfo(
            b["seq"], b["tree_size"], a["block_timestamp"], a["block_number"]
        )
        self.receipts[a["tx_hash"]] = Receipt(
            tx_hash=a["tx_hash"],
            status=1,
            block_number=a["block_number"],
            logs=(anchored_log(a["registry"], b["seq"], root, b["tree_size"],
                               a["block_timestamp"]),),
        )

    def chain_id(self) -> int:
        self._touch()
        return self._chain_id

    def anchor_of(self, registry: str, root: bytes) -> AnchorInfo | None:
        self._touch()
        return self.anchors.get((registry, root))

    def revocation_of(self, registry: str, subject: bytes) -> RevocationInfo | None:
        self._touch()
        return self.revocations.get((registry, subject))

    def get_transaction_receipt(self, tx_hash: str) -> Receipt | None:
        self._touch()
        return self.receipts.get(tx_hash)

    def batch_count(self, registry: str) -> int:
        self._touch()
        return self.batch_counts.get(registry, 0)


def make_bundle(
    proofs: Sequence[dict[str, Any]],
    files: dict[str, bytes],
    *,
    code: str = CODE,
    report_record_id: str = "01REPORT",
    revocation: dict[str, Any] | None = None,
    extra_members: dict[str, bytes] | None = None,
    manifest: dict[str, Any] | None = None,
) -> bytes:
    """A bundle ZIP: manifest.json and files/<name> for each entry of ``files``."""
    doc = manifest or {
        "format": "jianzheng-bundle/1",
        "code": code,
        "report_record_id": report_record_id,
        "proofs": list(proofs),
        "revocation": revocation,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(doc, ensure_ascii=False))
        for name, content in files.items():
            zf.writestr(f"files/{name}", content)
        for name, content in (extra_members or {}).items():
            zf.writestr(name, content)
    return out.getvalue()
