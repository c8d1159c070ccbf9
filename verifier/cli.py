"""``jianzheng-verify``: check proofs and evidence bundles against the chain (INTERFACE.md §6).

    jianzheng-verify PATH --rpc URL [--registry 0x… --chain-id N] [--trust-roots ROOTS.pem]
                     [--json REPORT.json] [--strict]
    jianzheng-verify qr IMAGE_OR_TEXT --trust-list FILE [--trust-roots ROOTS.pem] [--json]

(the second form: verifier/qr_cli.py, the signed QR payload offline, §7.8)

PATH is a proof (``jianzheng-proof/1`` JSON), a bundle (``jianzheng-bundle/1`` ZIP) or a
folder of bundles (``*.zip``, progress on stderr). One line per check, then a summary.

Exit codes: 0 every check passed and the report stands; 3 every check passed but the report
is revoked or superseded (read from the chain); 1 a check failed or the chain could not be
reached; 2 unusable input; with --strict, 4 when every check passed but a line is WARN
(custody gaps such as a missing seal or receipt, an uncited test record, an unpinned chain,
§7.3). For a folder, the most serious outcome wins, in the order 1 > 2 > 3 > 4 > 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.bundle import open_bundle, read_revocation, report_code_of, verify_bundle
from verifier.bundle_checks import read_trust_roots
from verifier.chain import (
    DEFAULT_TIMEOUT,
    BundleChainSource,
    CachingChain,
    ChainSource,
    RpcClient,
)
from verifier.custody import EvidenceWarning
from verifier.errors import ChainError, InvalidBundle, InvalidProof
from verifier.models import Check, ReportStatus
from verifier.proof import MAX_PROOF_BYTES, Pins, parse_address, parse_proof, verify_proof

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2
EXIT_REVOKED = 3
#: With --strict: every check passed and the report stands, but something was a warning.
EXIT_WARNED = 4
_SEVERITY = {EXIT_OK: 0, EXIT_WARNED: 1, EXIT_REVOKED: 2, EXIT_UNUSABLE: 3, EXIT_FAILED: 4}
ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class TargetResult:
    """What one PATH (proof or bundle) came to."""

    path: str
    kind: str
    exit_code: int
    status: ReportStatus | None = None
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    error_code: str | None = None
    #: The §7.2 evidence warnings of a bundle (verifier.custody).
    warnings: list[EvidenceWarning] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "exit_code": self.exit_code,
            "status": self.status,
            "error": None if self.error is None else {"code": self.error_code,
                                                      "message": self.error},
            "checks": [
                {
                    "status": c.status,
                    "name": c.name,
                    "detail": c.detail,
                    "record_id": c.record_id,
                    "record_type": c.record_type,
                }
                for c in self.checks
            ],
            "warnings": [w.as_json() for w in self.warnings],
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jianzheng-verify",
        description="Verify Jianzheng proofs and evidence bundles against an EVM chain.",
        epilog="A paper report's QR code, offline (INTERFACE §7.5): "
        "jianzheng-verify qr IMAGE_OR_TEXT --trust-list FILE (see jianzheng-verify qr --help).",
    )
    parser.add_argument("path", metavar="PATH",
                        help="a proof (.json), a bundle (.zip) or a folder of bundles")
    parser.add_argument("--rpc", required=True, metavar="URL", help="JSON-RPC URL of the chain")
    parser.add_argument("--registry", metavar="0x…", help="EvidenceRegistry address to trust")
    parser.add_argument("--chain-id", type=int, metavar="N", help="chain id to trust")
    parser.add_argument("--json", metavar="REPORT.json", help="also write a JSON report here")
    parser.add_argument("--trust-roots", metavar="ROOTS.pem",
                        help="PEM certificates to trust for the sealed PDF's signature and "
                        "time-stamp (`jianzheng ca roots`); without it, integrity only")
    parser.add_argument("--strict", action="store_true",
                        help="exit 4 instead of 0 when every check passed but a line is WARN "
                        "(custody gaps, an unpinned chain, a record outside the evidence)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"JSON-RPC timeout (default {DEFAULT_TIMEOUT:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["qr"]:  # `jianzheng-verify qr …` (§7.8); a file named qr: ./qr
        from verifier.qr_cli import main as qr_main

        return qr_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        pins = Pins(
            chain_id=args.chain_id,
            registry=parse_address(args.registry, "--registry") if args.registry else None,
        )
        client = RpcClient(args.rpc, timeout=args.timeout)
        trust_roots = read_trust_roots(args.trust_roots) if args.trust_roots else None
    except (ValueError, ChainError) as exc:
        print(f"jianzheng-verify: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    chain = CachingChain(client)

    root = Path(args.path)
    if root.is_dir():
        targets = sorted(p for p in root.iterdir() if p.suffix.lower() == ".zip" and p.is_file())
        if not targets:
            print(f"jianzheng-verify: no *.zip bundles in {root}", file=sys.stderr)
            return EXIT_UNUSABLE
    else:
        targets = [root]

    trust_line = _trust_line(pins)
    results: list[TargetResult] = []
    for i, target in enumerate(targets, 1):
        if len(targets) > 1:
            print(f"[{i}/{len(targets)}] {target.name}", file=sys.stderr, flush=True)
        result = verify_path(target, chain, pins, trust_roots=trust_roots)
        if args.strict and result.exit_code == EXIT_OK and (
            trust_line or any(c.status == "WARN" for c in result.checks)
        ):
            result.exit_code = EXIT_WARNED
        results.append(result)
        _print_result(result, trust_line)

    overall = max((r.exit_code for r in results), key=_SEVERITY.__getitem__)
    if len(results) > 1:
        counts = {code: sum(r.exit_code == code for r in results) for code in _SEVERITY}
        print(
            f"TOTAL  {len(results)} bundles: {counts[EXIT_OK]} stand, "
            f"{counts[EXIT_REVOKED]} revoked/superseded, {counts[EXIT_FAILED]} failed, "
            f"{counts[EXIT_UNUSABLE]} unusable"
            + (f", {counts[EXIT_WARNED]} with warnings" if counts[EXIT_WARNED] else "")
        )
    if args.json:
        report = {
            "tool": "jianzheng-verify",
            "rpc": args.rpc,
            "pins": {"chain_id": pins.chain_id, "registry": pins.registry},
            "exit_code": overall,
            "results": [r.to_json() for r in results],
        }
        try:
            Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n",
                                       encoding="utf-8")
        except OSError as exc:
            print(f"jianzheng-verify: cannot write {args.json}: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
    return overall


def verify_path(
    path: Path, chain: BundleChainSource, pins: Pins, *, trust_roots: Sequence[bytes] | None
) -> TargetResult:
    """Verify one proof or bundle file; never raises for bad input. A bundle gets every
    check of ``verify_bundle``, the sealed PDF against ``trust_roots`` (None: integrity
    only, with a warning)."""
    label = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(ZIP_MAGIC))
    except OSError as exc:
        return TargetResult(label, "unknown", EXIT_UNUSABLE, error=f"cannot read: {exc.strerror}",
                            error_code="unreadable")
    if head == ZIP_MAGIC:
        return _verify_bundle_path(path, chain, pins, trust_roots)
    return _verify_proof_path(path, chain, pins)


def _verify_bundle_path(
    path: Path, chain: BundleChainSource, pins: Pins, trust_roots: Sequence[bytes] | None
) -> TargetResult:
    label = os.fspath(path)
    try:
        with open_bundle(path) as bundle:
            verification = verify_bundle(bundle, chain, pins, trust_roots=trust_roots)
    except InvalidBundle as exc:
        return TargetResult(label, "bundle", EXIT_UNUSABLE, error=exc.message, error_code=exc.code)
    checks = list(verification.all_checks)
    return TargetResult(
        label,
        "bundle",
        _exit_code(verification.bottom_line, verification.status),
        status=verification.status,
        checks=checks,
        warnings=list(verification.warnings),
    )


def _verify_proof_path(path: Path, chain: ChainSource, pins: Pins) -> TargetResult:
    label = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PROOF_BYTES + 1)
        proof = parse_proof(data)
    except OSError as exc:
        return TargetResult(label, "proof", EXIT_UNUSABLE, error=f"cannot read: {exc.strerror}",
                            error_code="unreadable")
    except InvalidProof as exc:
        return TargetResult(label, "proof", EXIT_UNUSABLE, error=exc.message, error_code=exc.code)
    verification = verify_proof(proof, chain, pins)
    checks = list(verification.checks)
    status: ReportStatus | None = None
    if proof.record_type == "report":
        code = report_code_of(proof.record)
        if code is None:
            checks.append(Check("revocation", True,
                                "report record carries no body.code: revocation not checked",
                                proof.record_id, proof.record_type, warning=True))
        else:
            registry = pins.registry or proof.anchor.registry
            revocation_checks, status, _ = read_revocation(chain, registry, code, None)
            checks += revocation_checks
    bottom_line = all(c.ok for c in checks)
    return TargetResult(label, "proof", _exit_code(bottom_line, status), status=status,
                        checks=checks)


def _exit_code(bottom_line: bool, status: ReportStatus | None) -> int:
    if not bottom_line:
        return EXIT_FAILED
    if status in ("revoked", "superseded"):
        return EXIT_REVOKED
    return EXIT_OK


def _trust_line(pins: Pins) -> str | None:
    missing = [flag for flag, value in (("--registry", pins.registry),
                                         ("--chain-id", pins.chain_id)) if value is None]
    if not missing:
        return None
    return (f"WARN  {'trust':<18} no {' and '.join(missing)} given: trusting the "
            "bundle's own chain id/registry values")


def _record_label(check: Check) -> str:
    if check.record_id is None and check.record_type is None:
        return ""
    return f"[{check.record_type or '?'} {check.record_id or '?'}] "


def _print_result(result: TargetResult, trust_line: str | None) -> None:
    print(f"== {result.path} ({result.kind})")
    if result.error is not None:
        print(f"FAIL  {'input':<18} unusable input: {result.error} [{result.error_code}]")
        print(f"RESULT  {result.path}: UNUSABLE INPUT")
        return
    if trust_line:
        print(trust_line)
    for check in result.checks:
        print(f"{check.status:<5} {check.name:<18} {_record_label(check)}{check.detail}")
    passed = sum(c.status == "PASS" for c in result.checks)
    failed = sum(c.status == "FAIL" for c in result.checks)
    warned = sum(c.status == "WARN" for c in result.checks)
    if result.exit_code == EXIT_FAILED:
        verdict = "FAILED"
    elif result.exit_code == EXIT_REVOKED:
        verdict = (result.status or "revoked").upper()
    elif result.exit_code == EXIT_WARNED:
        verdict = f"{(result.status or 'valid').upper()} WITH WARNINGS (--strict)"
    elif result.status is None:
        verdict = "VALID"
    else:
        verdict = result.status.upper()
    print(f"RESULT  {result.path}: {verdict} ({passed} passed, {failed} failed, "
          f"{warned} warnings)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
