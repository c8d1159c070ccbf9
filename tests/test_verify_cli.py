"""jianzheng-verify without a chain: unusable input (exit 2) and an unreachable node (exit 1)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.proof_builder import REGISTRY, ancestry_records, build_proofs, file_sha, make_bundle
from verifier.cli import main
from verifier.merkle import record_leaf_hash


def _dead_rpc() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def proof_file(tmp_path: Path) -> Path:
    proofs, _ = build_proofs(ancestry_records())
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proofs[-1], ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "invalid_json"),
        (b"\x00\x01binary", "invalid_json"),
        (b'{"format": "jianzheng-proof/9"}', "unknown_format"),
        (b"PK\x03\x04 not really a zip", "not_zip"),
    ],
)
def test_unusable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                content: bytes, code: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    assert main([str(path), "--rpc", _dead_rpc()]) == 2
    out = capsys.readouterr().out
    assert f"[{code}]" in out and "UNUSABLE INPUT" in out


def test_bad_arguments_exit_2(proof_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(proof_file), "--rpc", "ftp://x"]) == 2
    assert main([str(proof_file), "--rpc", _dead_rpc(), "--registry", "0x1234"]) == 2
    assert main([str(proof_file), "--rpc", _dead_rpc(), "--chain-id", "0"]) == 2
    assert main([str(proof_file.parent / "missing.json"), "--rpc", _dead_rpc()]) == 2
    with pytest.raises(SystemExit) as info:
        main([str(proof_file)])  # --rpc is required
    assert info.value.code == 2
    capsys.readouterr()


def test_unreachable_chain_exits_1(proof_file: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    code = main([str(proof_file), "--rpc", _dead_rpc(), "--timeout", "2",
                 "--registry", REGISTRY, "--chain-id", "31337", "--json", str(report)])
    assert code == 1
    out = capsys.readouterr().out
    assert "PASS  record_hash" in out and "PASS  inclusion" in out
    assert "FAIL  chain_unreachable" in out
    assert "WARN  trust" not in out
    doc: dict[str, Any] = json.loads(report.read_text("utf-8"))
    assert doc["exit_code"] == 1
    statuses = {(c["name"], c["status"]) for c in doc["results"][0]["checks"]}
    assert ("chain_unreachable", "FAIL") in statuses and ("record_hash", "PASS") in statuses


def test_folder_of_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proofs, _ = build_proofs(ancestry_records())
    pdf = b"%PDF-1.7 signed report\n"
    folder = tmp_path / "bundles"
    folder.mkdir()
    (folder / "a.zip").write_bytes(make_bundle(proofs, {file_sha(pdf): pdf}))
    (folder / "b.zip").write_bytes(b"PK\x03\x04 broken")
    (folder / "notes.txt").write_text("ignored")
    code = main([str(folder), "--rpc", _dead_rpc(), "--timeout", "2"])
    captured = capsys.readouterr()
    assert code == 1  # a failed check outranks unusable input
    assert "[1/2] a.zip" in captured.err and "[2/2] b.zip" in captured.err
    assert "WARN  trust" in captured.out
    assert "TOTAL  2 bundles: 0 stand, 0 revoked/superseded, 1 failed, 1 unusable" in captured.out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--rpc", _dead_rpc()]) == 2


def test_attached_evidence_prints_pass_not_warn(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A witness record hanging off the report's sample is attached evidence: a PASS line
    naming it, no ancestry warning (the chain is unreachable here; the bundle checks run)."""
    records = ancestry_records()
    sample = next(r for r in records if r["type"] == "sample")
    witness = {"type": "witness", "v": 1, "id": "01WITNESS", "institution": "x",
               "created_at": "2026-11-22T10:00:00Z",
               "parents": [record_leaf_hash(sample).hex()], "files": [], "body": {}}
    proofs, _ = build_proofs([*records, witness])
    pdf = b"%PDF-1.7 signed report\n"
    path = tmp_path / "b.zip"
    path.write_bytes(make_bundle(proofs, {file_sha(pdf): pdf}))
    main([str(path), "--rpc", _dead_rpc(), "--timeout", "2", "--registry", REGISTRY,
          "--chain-id", "31337"])
    out = capsys.readouterr().out
    assert "WARN  ancestry" not in out
    assert ("PASS  ancestry           [witness 01WITNESS] attached evidence, not an ancestor "
            "of the report: derives from sample 01SAMPLE of the report's ancestry") in out
