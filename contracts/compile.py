"""Compile EvidenceRegistry.sol into the committed artifact contracts/EvidenceRegistry.json.

Usage: .venv/bin/python contracts/compile.py [--check]

The compiler is pinned: py-solc-x drives chain-dev/solc-shim.js, which wraps the npm `solc`
package (WebAssembly, works offline) and must report exactly SOLC_VERSION. EVM version and
optimizer settings are pinned too, and any compiler warning fails the build. With --check
nothing is written: the script exits 1 and summarises the difference if the committed artifact
is not what a fresh compile produces (run it in CI).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import solcx
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACT_NAME = "EvidenceRegistry"
SOURCE_UNIT = f"contracts/{CONTRACT_NAME}.sol"
SOURCE_PATH = REPO_ROOT / SOURCE_UNIT
ARTIFACT_PATH = REPO_ROOT / "contracts" / f"{CONTRACT_NAME}.json"
SHIM_PATH = REPO_ROOT / "chain-dev" / "solc-shim.js"

SOLC_VERSION = Version("0.8.37")
EVM_VERSION = "cancun"
OPTIMIZER: dict[str, Any] = {"enabled": True, "runs": 200}


class CompileError(Exception):
    """The contract did not compile cleanly (errors or warnings) or the compiler is wrong."""


def _shim() -> Path:
    if not SHIM_PATH.is_file():
        raise CompileError(f"{SHIM_PATH} is missing")
    if not os.access(SHIM_PATH, os.X_OK):
        raise CompileError(f"{SHIM_PATH} is not executable (chmod +x it)")
    if not (SHIM_PATH.parent / "node_modules" / "solc").is_dir():
        raise CompileError("chain-dev/node_modules/solc is missing: run `npm ci` in chain-dev/")
    return SHIM_PATH


def compiler_version(solc_binary: Path) -> str:
    """The compiler's version with commit hash, e.g. ``0.8.37+commit.f401782d``."""
    version = solcx.wrapper.get_solc_version(solc_binary, with_commit_hash=True)
    if Version(version.base_version) != SOLC_VERSION:
        raise CompileError(f"compiler is solc {version}, this project pins {SOLC_VERSION}")
    return str(version)


def standard_json_input(source: str) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {SOURCE_UNIT: {"content": source}},
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": OPTIMIZER,
            "metadata": {"bytecodeHash": "ipfs"},
            "outputSelection": {
                SOURCE_UNIT: {CONTRACT_NAME: ["abi", "evm.bytecode.object",
                                              "evm.deployedBytecode.object"]},
            },
        },
    }


def compile_artifact(source: bytes | None = None) -> dict[str, Any]:
    """Compile the contract (``source`` instead of the file, if given: tests use it) and
    return the artifact. Raises CompileError on any error or warning."""
    shim = _shim()
    version = compiler_version(shim)
    source_bytes = SOURCE_PATH.read_bytes() if source is None else source
    try:
        output = solcx.compile_standard(
            standard_json_input(source_bytes.decode("utf-8")), solc_binary=shim
        )
    except solcx.exceptions.SolcError as exc:
        raise CompileError(str(exc)) from exc
    problems = [
        e.get("formattedMessage", e.get("message", ""))
        for e in output.get("errors", [])
        if e.get("severity") in ("error", "warning")
    ]
    if problems:
        raise CompileError("compiler warnings are errors here:\n" + "\n".join(problems))
    contract = output["contracts"][SOURCE_UNIT][CONTRACT_NAME]
    bytecode = contract["evm"]["bytecode"]["object"]
    deployed = contract["evm"]["deployedBytecode"]["object"]
    if not bytecode or not deployed:
        raise CompileError("compiler returned empty bytecode")
    return {
        "contractName": CONTRACT_NAME,
        "abi": contract["abi"],
        "bytecode": "0x" + bytecode,
        "deployedBytecode": "0x" + deployed,
        "compiler": {
            "version": version,
            "evmVersion": EVM_VERSION,
            "optimizer": dict(OPTIMIZER),
        },
        "sourceSha256": hashlib.sha256(source_bytes).hexdigest(),
    }


def render(artifact: dict[str, Any]) -> str:
    """The artifact's committed text form: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(artifact, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def _abi_signature(entry: dict[str, Any]) -> str:
    types = ",".join(str(i.get("type")) for i in entry.get("inputs", []))
    return f"{entry.get('type')} {entry.get('name', '')}({types})"


def differences(committed: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Human-readable summary of how ``committed`` differs from ``fresh`` (empty: equal)."""
    out: list[str] = []
    for key in sorted(set(committed) | set(fresh)):
        if key not in committed:
            out.append(f"{key}: missing from the committed artifact")
        elif key not in fresh:
            out.append(f"{key}: not produced by a fresh compile")
        elif committed[key] != fresh[key]:
            if key == "abi" and isinstance(committed[key], list):
                old = {_abi_signature(e) for e in committed[key]}
                new = {_abi_signature(e) for e in fresh[key]}
                detail = [f"+ {s}" for s in sorted(new - old)]
                detail += [f"- {s}" for s in sorted(old - new)]
                out.append("abi differs" + (": " + "; ".join(detail) if detail else
                                            " (same signatures, other details)"))
            elif isinstance(fresh[key], str) and len(fresh[key]) > 80:
                out.append(f"{key} differs ({len(committed[key])} vs {len(fresh[key])} chars)")
            else:
                out.append(f"{key}: committed {committed[key]!r}, fresh {fresh[key]!r}")
    return out


def check(path: Path | None = None) -> list[str]:
    """Compare the committed artifact (``path`` or ARTIFACT_PATH) with a fresh compile, byte for
    byte; returns the differences (empty: identical)."""
    path = ARTIFACT_PATH if path is None else path
    fresh = compile_artifact()
    if not path.is_file():
        return [f"{path} does not exist"]
    text = path.read_text(encoding="utf-8")
    try:
        committed = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"{path} is not valid JSON: {exc}"]
    diffs = differences(committed, fresh)
    if not diffs and text != render(fresh):
        diffs.append("same content, different formatting (regenerate with compile.py)")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="compare the committed artifact with a fresh compile; write nothing")
    args = parser.parse_args(argv)
    try:
        if args.check:
            diffs = check()
            if diffs:
                sys.stderr.write(f"{ARTIFACT_PATH.name} is out of date:\n")
                sys.stderr.writelines(f"  {d}\n" for d in diffs)
                return 1
            sys.stdout.write(f"{ARTIFACT_PATH.name} is up to date\n")
            return 0
        artifact = compile_artifact()
    except CompileError as exc:
        sys.stderr.write(f"compile failed: {exc}\n")
        return 2
    ARTIFACT_PATH.write_text(render(artifact), encoding="utf-8")
    sys.stdout.write(f"wrote {ARTIFACT_PATH.relative_to(REPO_ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
