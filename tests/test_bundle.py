"""jianzheng-bundle/1: safe reading and the bundle checks, against in-memory chain data."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

import verifier.bundle as bundle_mod
from tests.proof_builder import (
    CHAIN_ID,
    CODE,
    REGISTRY,
    FakeChain,
    ancestry_records,
    build_proofs,
    file_sha,
    make_bundle,
)
from verifier.bundle import Bundle, open_bundle, verify_bundle
from verifier.chain import report_subject
from verifier.errors import InvalidBundle, InvalidProof
from verifier.merkle import record_leaf_hash
from verifier.models import BundleVerification, Check, RevocationInfo
from verifier.proof import Pins

PINNED = Pins(chain_id=CHAIN_ID, registry=REGISTRY)
#: The warnings every bundle here gets from the default sealed-PDF check: no trust roots
#: pinned (trust_roots=None), and the report names a stand-in PDF, not a sealed one.
UNSEALED = [("sealed_pdf_trust", None), ("sealed_pdf", "01REPORT")]
PDF = b"%PDF-1.7 signed report\n"
CONTRACT_PDF = b"%PDF-1.7 contract"


@pytest.fixture
def proofs() -> list[dict[str, Any]]:
    return build_proofs(ancestry_records(PDF))[0]


@pytest.fixture
def chain(proofs: list[dict[str, Any]]) -> FakeChain:
    fake = FakeChain()
    fake.anchor(proofs[0])
    return fake


def files() -> dict[str, bytes]:
    return {file_sha(PDF): PDF, file_sha(CONTRACT_PDF): CONTRACT_PDF}


def verify(data: bytes, chain: FakeChain, pins: Pins = PINNED, **kw: Any) -> BundleVerification:
    """Every check, as a library caller gets them; integrity-only PDF checking unless a test
    passes ``trust_roots``."""
    kw.setdefault("trust_roots", None)
    with open_bundle(data) as b:
        return verify_bundle(b, chain, pins, **kw)


def failures(result: BundleVerification) -> list[tuple[str, str | None, str | None]]:
    return [(f.check, f.record_type, f.record_id) for f in result.findings
            if f.severity == "error"]


def test_good_bundle(proofs: list[dict[str, Any]], chain: FakeChain, tmp_path: Path) -> None:
    data = make_bundle(proofs, files())
    result = verify(data, chain)
    assert result.bottom_line, result.findings
    assert result.status == "genuine"
    assert [(f.check, f.record_id) for f in result.findings] == UNSEALED
    assert len(result.proofs) == 6
    names = {c.name for c in result.checks}
    assert {"record_shape", "file_hash", "record_files", "parent_links", "report",
            "report_code", "ancestry", "revocation", "sealed_pdf_trust", "sealed_pdf",
            "batch_sequence"} <= names
    path = tmp_path / "b.zip"
    path.write_bytes(data)
    assert bundle_mod.verify_bundle_file(path, chain, PINNED, trust_roots=None).bottom_line


def test_swapped_file_is_named(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    swapped = files()
    swapped[file_sha(PDF)] = b"%PDF-1.7 forged report\n"
    result = verify(make_bundle(proofs, swapped), chain)
    assert not result.bottom_line
    assert ("file_hash", None, None) in failures(result)
    assert ("record_files", "report", "01REPORT") in failures(result)


def test_missing_file_is_named(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    only_pdf = {file_sha(PDF): PDF}
    result = verify(make_bundle(proofs, only_pdf), chain)
    assert failures(result) == [("record_files", "contract", "01CONTRACT")]
    assert "missing" in result.findings[0].message


def test_wrong_file_size(chain: FakeChain) -> None:
    records = ancestry_records(PDF)
    records[1]["files"][0]["size"] = 999
    # Rebuild the batch so the proofs themselves hold; only the size claim is wrong.
    proofs, _ = build_proofs(records)
    chain = FakeChain()
    chain.anchor(proofs[0])
    result = verify(make_bundle(proofs, files()), chain)
    assert ("record_files", "contract", "01CONTRACT") in failures(result)


def test_dropped_parent_is_named(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    without_sample = [p for p in proofs if p["record"]["type"] != "sample"]
    result = verify(make_bundle(without_sample, files()), chain)
    assert sorted(failures(result)) == [
        ("parent_links", "report", "01REPORT"),
        ("parent_links", "test_record", "01TEST"),
    ]


def test_tampered_record_in_bundle(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    tampered = copy.deepcopy(proofs)
    tampered[3]["record"]["body"]["strength"] = 35.0
    result = verify(make_bundle(tampered, files()), chain)
    assert failures(result) == [("record_hash", "sample", "01SAMPLE")]


def test_report_missing_or_wrong(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    result = verify(make_bundle(proofs[:-1], files()), chain)
    assert ("report", None, None) in failures(result)
    result = verify(make_bundle(proofs, files(), report_record_id="01SAMPLE"), chain)
    assert ("report", "sample", "01SAMPLE") in failures(result)


def test_manifest_code_must_match_report(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    result = verify(make_bundle(proofs, files(), code="44030026ZZZZZZZZZZZZZZ9"), chain)
    assert failures(result) == [("report_code", "report", "01REPORT")]


def test_extra_record_outside_ancestry_warns(chain: FakeChain) -> None:
    records = ancestry_records(PDF)
    records.append({"type": "media", "v": 1, "id": "01MEDIA", "institution": "x",
                    "created_at": "2026-11-22T10:00:00Z", "parents": [], "files": [],
                    "body": {}})
    proofs, _ = build_proofs(records)
    chain = FakeChain()
    chain.anchor(proofs[0])
    result = verify(make_bundle(proofs, files()), chain)
    assert result.bottom_line
    warnings = [(f.check, f.record_id) for f in result.findings if f.severity == "warning"]
    assert warnings == [("ancestry", "01MEDIA"), *UNSEALED]


def _revocation_proof(report: dict[str, Any], superseded_by: str | None) -> dict[str, Any]:
    record = {"type": "revocation", "v": 1, "id": "01REVOKE", "institution": "x",
              "created_at": "2026-11-23T10:00:00Z",
              "parents": [record_leaf_hash(report).hex()], "files": [],
              "body": {"reason": "数据录入错误", "superseded_by": superseded_by}}
    proofs, _ = build_proofs([record], seq=2, tx_hash="0x" + "cd" * 32, block_number=50)
    return proofs[0]


@pytest.mark.parametrize(("successor", "status"), [(None, "revoked"),
                                                    ("44030026NEWCODE000000001", "superseded")])
def test_revoked_on_chain(proofs: list[dict[str, Any]], chain: FakeChain, successor: str | None,
                          status: str) -> None:
    revocation = _revocation_proof(proofs[-1]["record"], successor)
    chain.anchor(revocation)
    reason = bytes.fromhex(revocation["leaf_hash"])
    chain.revocations[(REGISTRY, report_subject(CODE))] = RevocationInfo(
        report_subject(CODE), reason, 1_763_900_000)
    # Bundle without the revocation record: still revoked (the chain decides), with a warning.
    result = verify(make_bundle(proofs, files()), chain)
    assert result.bottom_line and result.status == "revoked"
    assert result.revocation is not None and result.revocation.reason == reason
    # Bundle with it: superseded when the record names a successor.
    result = verify(make_bundle(proofs, files(), revocation=revocation), chain)
    assert result.bottom_line, result.findings
    assert result.status == status
    assert len(result.proofs) == 7
    assert any(c.name == "revocation" and c.status == "WARN" for c in result.checks)


def test_revocation_record_must_be_the_one_on_chain(
    proofs: list[dict[str, Any]], chain: FakeChain
) -> None:
    revocation = _revocation_proof(proofs[-1]["record"], None)
    chain.anchor(revocation)
    chain.revocations[(REGISTRY, report_subject(CODE))] = RevocationInfo(
        report_subject(CODE), b"\x42" * 32, 1_763_900_000)
    result = verify(make_bundle(proofs, files(), revocation=revocation), chain)
    assert ("revocation_record", "revocation", "01REVOKE") in failures(result)


def test_revocation_only_in_bundle_warns(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    revocation = _revocation_proof(proofs[-1]["record"], None)
    chain.anchor(revocation)
    result = verify(make_bundle(proofs, files(), revocation=revocation), chain)
    assert result.bottom_line and result.status == "genuine"
    assert any(f.check == "revocation_record" and f.severity == "warning"
               for f in result.findings)


def test_chain_down(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    chain.down = True
    result = verify(make_bundle(proofs, files()), chain)
    assert not result.bottom_line and result.status is None
    assert {f.check for f in result.findings if f.severity == "error"} == {"chain_unreachable"}


def test_extra_checks_plug_in(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    def sealed_pdf(b: Bundle) -> list[Check]:
        report = b.report
        assert report is not None
        content = b.read_file(report.record["files"][0]["sha256"])
        return [Check("sealed_pdf", content == PDF, "looked at the PDF", report.record_id,
                      report.record_type)]

    def broken(b: Bundle) -> list[Check]:
        b.read_file("00" * 32)
        return []

    result = verify(make_bundle(proofs, files()), chain, extra_checks=[sealed_pdf])
    assert result.bottom_line and result.checks[-1].name == "sealed_pdf"
    result = verify(make_bundle(proofs, files()), chain, extra_checks=[broken])
    assert failures(result) == [("broken", None, None)]


# --- reading limits ---------------------------------------------------------------------------


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members:
            zf.writestr(name, content)
    return out.getvalue()


def test_unusable_bundles(proofs: list[dict[str, Any]]) -> None:
    good_manifest = json.loads(zipfile.ZipFile(io.BytesIO(make_bundle(proofs, {})))
                               .read("manifest.json"))
    cases: list[tuple[bytes, str]] = [
        (b"not a zip", "not_zip"),
        (b"PK\x03\x04 truncated", "not_zip"),
        (_zip([("files/x", b"")]), "no_manifest"),
        (_zip([("manifest.json", b"{]")]), "invalid_manifest"),
        (_zip([("manifest.json", b'{"format":"jianzheng-bundle/2"}')]), "unknown_format"),
        (_zip([("manifest.json", json.dumps({**good_manifest, "proofs": []}).encode())]),
         "invalid_manifest"),
        (_zip([("manifest.json", json.dumps({**good_manifest, "code": "?"}).encode())]),
         "invalid_manifest"),
        (_zip([("manifest.json", json.dumps({**good_manifest,
                                             "proofs": [{"format": "x"}]}).encode())]),
         "invalid_proof"),
        (_zip([("manifest.json", json.dumps(good_manifest).encode()),
               ("files/" + "0" * 64, b"\0" * (4 * 1024 * 1024))]), "compression_ratio"),
    ]
    for data, code in cases:
        with pytest.raises(InvalidBundle) as info:
            open_bundle(data)
        assert info.value.code == code, (code, info.value)


def test_duplicate_and_encrypted_members(proofs: list[dict[str, Any]]) -> None:
    manifest = zipfile.ZipFile(io.BytesIO(make_bundle(proofs, {}))).read("manifest.json")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("manifest.json", manifest)
        zf.writestr("manifest.json", b"{}")
    with pytest.raises(InvalidBundle) as info:
        open_bundle(out.getvalue())
    assert info.value.code == "duplicate_member"
    # Mark the member encrypted (general purpose flag bit 0) in both headers.
    data = bytearray(_zip([("manifest.json", manifest)]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x1
    with pytest.raises(InvalidBundle) as info:
        open_bundle(bytes(data))
    assert info.value.code == "encrypted_member"


def test_member_limits(proofs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_bundle(proofs, files())
    monkeypatch.setattr(bundle_mod, "MAX_MEMBERS", 2)
    with pytest.raises(InvalidBundle) as info:
        open_bundle(data)
    assert info.value.code == "too_many_members"
    monkeypatch.setattr(bundle_mod, "MAX_MEMBERS", 100)
    monkeypatch.setattr(bundle_mod, "MAX_TOTAL_UNCOMPRESSED", 100)
    with pytest.raises(InvalidBundle) as info:
        open_bundle(data)
    assert info.value.code == "bundle_too_large"


def test_corrupt_member_content(proofs: list[dict[str, Any]]) -> None:
    data = bytearray(_zip([("manifest.json", json.dumps(json.loads(zipfile.ZipFile(io.BytesIO(
        make_bundle(proofs, {}))).read("manifest.json"))).encode())]))
    # Flip a byte inside the compressed manifest: CRC or inflate fails, never a crash.
    data[60] ^= 0xFF
    with pytest.raises(InvalidBundle) as info:
        open_bundle(bytes(data))
    assert info.value.code in ("corrupt_member", "invalid_manifest", "not_zip")


def test_unexpected_member_warns(proofs: list[dict[str, Any]], chain: FakeChain) -> None:
    data = make_bundle(proofs, files(), extra_members={"README.txt": b"hi"})
    result = verify(data, chain)
    assert result.bottom_line
    assert [f.check for f in result.findings] == ["unexpected_member",
                                                  *(check for check, _ in UNSEALED)]


def test_invalid_proof_error_is_not_invalid_bundle() -> None:
    assert not issubclass(InvalidProof, InvalidBundle)


def _record(rtype: str, rid: str, parents: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": rtype, "v": 1, "id": rid, "institution": "x",
            "created_at": "2026-11-22T10:00:00Z",
            "parents": [record_leaf_hash(p).hex() for p in parents], "files": [], "body": {}}


def _with_attachments(stray: bool) -> list[dict[str, Any]]:
    """The ancestry plus what hangs off its sample: a key image, the seal and the witness
    record (children of the sample, not ancestors of the report), a receipt of that seal;
    optionally a record unrelated to any of them."""
    records = ancestry_records(PDF)
    sample = next(r for r in records if r["type"] == "sample")
    image = _record("media", "01IMAGE", [])
    seal = _record("seal", "01SEAL", [sample, image])
    witness = _record("witness", "01WITNESS", [sample, seal, image])
    receipt = _record("receipt", "01RECEIPT", [seal])
    extra = [image, seal, witness, receipt]
    if stray:
        extra.append(_record("media", "01STRAY", []))
    return records[:-1] + extra + records[-1:]


def test_attached_evidence_passes_and_only_unrelated_records_warn() -> None:
    proofs, _ = build_proofs(_with_attachments(stray=False))
    chain = FakeChain()
    chain.anchor(proofs[0])
    result = verify(make_bundle(proofs, files()), chain)
    assert result.bottom_line, result.findings
    # no ancestry warning for the seal, witness, receipt, image; the seal and witness
    # records here carry no witness signature, which the default check says
    unsigned = [("witness_signature", "01SEAL"), ("witness_signature", "01WITNESS")]
    # and without pinned roots the witnesses' keys are not checked against them
    unchecked = [("witness_certificates", None)]
    assert [(f.check, f.record_id) for f in result.findings] == [
        *unchecked, *UNSEALED, *unsigned]
    attached = {c.record_id: c.detail for c in result.checks
                if c.name == "ancestry" and c.status == "PASS" and c.record_id != "01REPORT"}
    assert set(attached) == {"01IMAGE", "01SEAL", "01WITNESS", "01RECEIPT"}
    assert all(d.startswith("attached evidence") for d in attached.values())
    assert "derives from sample 01SAMPLE of the report's ancestry" in attached["01WITNESS"]
    assert "derives from seal 01SEAL of attached evidence" in attached["01RECEIPT"]
    assert "named as a parent by attached record" in attached["01IMAGE"]
    summary = [c.detail for c in result.checks if c.name == "ancestry"
               and c.record_id == "01REPORT"]
    assert summary == ["all 10 records are in the report's ancestry (6) or attached to it (4)"]

    proofs, _ = build_proofs(_with_attachments(stray=True))
    chain = FakeChain()
    chain.anchor(proofs[0])
    result = verify(make_bundle(proofs, files()), chain)
    assert result.bottom_line
    warnings = [(f.check, f.record_id) for f in result.findings if f.severity == "warning"]
    assert warnings == [("ancestry", "01STRAY"), *unchecked, *UNSEALED, *unsigned]
