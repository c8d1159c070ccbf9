"""The committed contract artifact is exactly what contracts/compile.py produces now, and its
ABI is exactly INTERFACE.md section 2 on top of OpenZeppelin AccessControl."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPILE_PY = REPO_ROOT / "contracts" / "compile.py"
ARTIFACT = REPO_ROOT / "contracts" / "EvidenceRegistry.json"
SOURCE = REPO_ROOT / "contracts" / "EvidenceRegistry.sol"

# INTERFACE.md section 2, written out by hand: (kind, name, inputs, outputs / indexed flags).
INTERFACE_ABI = {
    ("function", "anchor(uint64,bytes32,uint64)", "", "nonpayable"),
    ("function", "revoke(bytes32,bytes32)", "", "nonpayable"),
    ("function", "anchorOf(bytes32)", "uint64 seq,uint64 leafCount,uint64 timestamp,"
                                      "uint64 blockNumber", "view"),
    ("function", "revocationOf(bytes32)", "bytes32 reason,uint64 timestamp", "view"),
    ("function", "batchCount()", "uint64", "view"),
    ("event", "Anchored(uint64,bytes32,uint64,uint64)", "indexed:1100", ""),
    ("event", "Revoked(bytes32,bytes32,uint64)", "indexed:100", ""),
    ("error", "EvidenceRegistrySequenceGap(uint64 expected,uint64 got)", "", ""),
    ("error", "EvidenceRegistryDuplicateRoot(bytes32 root)", "", ""),
    ("error", "EvidenceRegistryEmptyBatch()", "", ""),
    ("error", "EvidenceRegistryAlreadyRevoked(bytes32 subject)", "", ""),
}
# What OpenZeppelin 5 AccessControl adds, the role constants and the constructor.
ACCESS_CONTROL_ABI = {
    ("constructor", "(address admin,address anchorer,address revoker)", "", "nonpayable"),
    ("function", "ANCHORER_ROLE()", "bytes32", "view"),
    ("function", "REVOKER_ROLE()", "bytes32", "view"),
    ("function", "DEFAULT_ADMIN_ROLE()", "bytes32", "view"),
    ("function", "getRoleAdmin(bytes32)", "bytes32", "view"),
    ("function", "grantRole(bytes32,address)", "", "nonpayable"),
    ("function", "hasRole(bytes32,address)", "bool", "view"),
    ("function", "renounceRole(bytes32,address)", "", "nonpayable"),
    ("function", "revokeRole(bytes32,address)", "", "nonpayable"),
    ("function", "supportsInterface(bytes4)", "bool", "view"),
    ("event", "RoleAdminChanged(bytes32,bytes32,bytes32)", "indexed:111", ""),
    ("event", "RoleGranted(bytes32,address,address)", "indexed:111", ""),
    ("event", "RoleRevoked(bytes32,address,address)", "indexed:111", ""),
    ("error", "AccessControlBadConfirmation()", "", ""),
    ("error", "AccessControlUnauthorizedAccount(address account,bytes32 neededRole)", "", ""),
}


def _params(items: list[dict[str, Any]], named: bool) -> str:
    return ",".join(f"{i['type']} {i['name']}".strip() if named else i["type"] for i in items)


def abi_shape(abi: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Each ABI entry as (kind, signature, outputs or indexed flags, state mutability)."""
    shape = set()
    for e in abi:
        kind = e["type"]
        inputs = e.get("inputs", [])
        if kind == "function":
            outs = e.get("outputs", [])
            out = _params(outs, named=len(outs) > 1)
            shape.add((kind, f"{e['name']}({_params(inputs, False)})", out, e["stateMutability"]))
        elif kind == "event":
            flags = "".join("1" if i["indexed"] else "0" for i in inputs)
            shape.add((kind, f"{e['name']}({_params(inputs, False)})", f"indexed:{flags}", ""))
        elif kind == "error":
            shape.add((kind, f"{e['name']}({_params(inputs, True)})", "", ""))
        elif kind == "constructor":
            shape.add((kind, f"({_params(inputs, True)})", "", e["stateMutability"]))
        else:
            shape.add((kind, str(e.get("name")), "", ""))
    return shape


@pytest.fixture(scope="module")
def compiler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jz_contracts_compile", COMPILE_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fresh(compiler: ModuleType) -> dict[str, Any]:
    result: dict[str, Any] = compiler.compile_artifact()
    return result


@pytest.fixture
def committed() -> Iterator[dict[str, Any]]:
    yield json.loads(ARTIFACT.read_text(encoding="utf-8"))


def test_committed_artifact_equals_fresh_compile(
    compiler: ModuleType, fresh: dict[str, Any]
) -> None:
    text = ARTIFACT.read_text(encoding="utf-8")
    diffs = compiler.differences(json.loads(text), fresh)
    assert diffs == [], "regenerate with `.venv/bin/python contracts/compile.py`"
    assert text == compiler.render(fresh)  # byte for byte, formatting included


def test_abi_is_exactly_the_interface(committed: dict[str, Any]) -> None:
    assert abi_shape(committed["abi"]) == INTERFACE_ABI | ACCESS_CONTROL_ABI


def test_artifact_metadata(committed: dict[str, Any]) -> None:
    assert committed["contractName"] == "EvidenceRegistry"
    assert committed["compiler"] == {
        "version": "0.8.37+commit.f401782d",
        "evmVersion": "cancun",
        "optimizer": {"enabled": True, "runs": 200},
    }
    assert committed["sourceSha256"] == hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    for key in ("bytecode", "deployedBytecode"):
        assert committed[key].startswith("0x") and len(committed[key]) > 1000
        bytes.fromhex(committed[key][2:])
    assert "pragma solidity 0.8.37;" in SOURCE.read_text(encoding="utf-8")


def test_check_reports_any_difference(
    compiler: ModuleType, fresh: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(compiler, "compile_artifact", lambda source=None: fresh)
    target = tmp_path / "EvidenceRegistry.json"
    monkeypatch.setattr(compiler, "ARTIFACT_PATH", target)

    target.write_text(compiler.render(fresh))
    assert compiler.main(["--check"]) == 0

    tampered = copy.deepcopy(fresh)
    code = tampered["deployedBytecode"]
    tampered["deployedBytecode"] = code[:-1] + ("0" if code[-1] != "0" else "1")
    tampered["abi"] = [e for e in tampered["abi"] if e.get("name") != "revoke"]
    target.write_text(compiler.render(tampered))
    assert compiler.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "deployedBytecode differs" in err
    assert "+ function revoke(bytes32,bytes32)" in err

    target.write_text(json.dumps(fresh))  # same content, other formatting
    assert compiler.main(["--check"]) == 1
    assert "formatting" in capsys.readouterr().err

    target.unlink()
    assert compiler.main(["--check"]) == 1


def test_compiler_warnings_are_errors(compiler: ModuleType) -> None:
    source = SOURCE.read_bytes().replace(
        b"uint64 expected = _batchCount + 1;",
        b"uint64 expected = _batchCount + 1;\n        uint256 unused;",
    )
    assert b"uint256 unused;" in source
    with pytest.raises(compiler.CompileError, match="Unused local variable"):
        compiler.compile_artifact(source)
