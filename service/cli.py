"""`jianzheng` command line (INTERFACE.md §6).

Every command reads the same settings as `jianzheng serve` (JZ_* environment
variables, embedded defaults otherwise), so a second terminal sees the same service.
Handlers live next to the feature they drive; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def _cmd_serve(args: argparse.Namespace) -> int:
    from service.runtime import serve

    return serve(host=args.host, port=args.port)


def _cmd_api(args: argparse.Namespace) -> int:
    from service.runtime import api

    return api(host=args.host, port=args.port, workers=args.workers)


def _cmd_worker(args: argparse.Namespace) -> int:
    from service.runtime import run_worker

    return run_worker()


def _cmd_chain_up(args: argparse.Namespace) -> int:
    from service.runtime import chain_up

    return chain_up()


def _cmd_chain_hardhat(args: argparse.Namespace) -> int:
    from service.runtime import chain_hardhat

    return chain_hardhat(args.port)


def _cmd_chain_info(args: argparse.Namespace) -> int:
    from service.runtime import chain_info, chain_key_roles

    info = chain_info()
    out = info.as_json()
    if args.roles:
        out["keys"] = chain_key_roles(info)
    _print_json(out)
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.settings import get_settings
    from service.storage.backup import backup

    result = backup(
        get_settings(), Path(args.dest), lambda msg: print(f"backup: {msg}", file=sys.stderr)
    )
    _print_json(vars(result))
    if result.corrupt_blobs:
        print(
            f"jianzheng: {len(result.corrupt_blobs)} stored file(s) no longer match their "
            "hash and were not copied (see corrupt_blobs)",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from service.settings import get_settings
    from service.storage.db import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    return 0


def _cmd_institution(args: argparse.Namespace) -> int:
    from service.domain import accounts

    result: Any = accounts.cli_institution(args)
    _print_json(result)
    return 0


def _cmd_key(args: argparse.Namespace) -> int:
    from service.domain import accounts

    _print_json(accounts.cli_key(args))
    return 0


def _cmd_agency(args: argparse.Namespace) -> int:
    from service.domain import accounts

    _print_json(accounts.cli_agency(args))
    return 0


def _cmd_registry(args: argparse.Namespace) -> int:
    from service.domain import accounts, registry

    def run(session: Any, settings: Any) -> None:
        for entry in registry.iter_entries(
            session, institution=args.institution, kind=args.kind
        ):
            _print_json(entry)

    accounts.run_cli(run)
    return 0


def _cmd_console(args: argparse.Namespace) -> int:
    from service.domain.console.auth import cli_console

    _print_json(cli_console(args))
    return 0


def _cmd_auditor(args: argparse.Namespace) -> int:
    from service.domain import accounts

    _print_json(accounts.cli_auditor(args))
    return 0


def _cmd_ca_roots(args: argparse.Namespace) -> int:
    from service.runtime import ca_roots_pem

    sys.stdout.write(ca_roots_pem())
    return 0


def _cmd_qr_keys(args: argparse.Namespace) -> int:
    from service.runtime import qr_keys_command
    from signer.errors import CaError

    action = getattr(args, "qr_action", None) or "list"
    try:
        out = qr_keys_command(
            action,
            getattr(args, "kid", None),
            getattr(args, "grace", None),
            algorithm=getattr(args, "qr_algorithm", "es256").upper(),
        )
    except CaError as exc:
        print(f"jianzheng: {exc.message}", file=sys.stderr)
        return 1
    if isinstance(out, str):
        sys.stdout.write(out)
    else:
        _print_json(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jianzheng", description="Jianzheng (见证) evidence service"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "serve", help="run API + anchoring worker on the configured/embedded defaults"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "api", help="stateless API processes only (pair with `jianzheng worker`); PostgreSQL"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.set_defaults(func=_cmd_api)

    p = sub.add_parser("worker", help="run the anchoring worker alone (one leader at a time)")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser(
        "backup",
        help="copy the database, stored files and CA keys to DEST (consistent, incremental)",
    )
    p.add_argument("dest", help="backup directory, outside the data directory")
    p.set_defaults(func=_cmd_backup)
    p = sub.add_parser("migrate", help="upgrade the database schema to the newest migration")
    p.set_defaults(func=_cmd_migrate)

    chain = sub.add_parser("chain", help="the chain the service anchors to").add_subparsers(
        dest="chain_command", required=True
    )
    chain.add_parser("up", help="run the local dev chain in the foreground").set_defaults(
        func=_cmd_chain_up
    )
    p = chain.add_parser("info", help="print {rpc_url, chain_id, registry}")
    p.add_argument(
        "--roles", action="store_true",
        help="also ask the registry which roles the configured anchorer and revoker keys hold",
    )
    p.set_defaults(func=_cmd_chain_info)
    p = chain.add_parser(
        "hardhat", help="a throwaway Hardhat node with the registry deployed (foreground)"
    )
    p.add_argument("--port", type=int, default=None, help="default: a free loopback port")
    p.set_defaults(func=_cmd_chain_hardhat)

    inst = sub.add_parser("institution", help="labs (检测机构)").add_subparsers(
        dest="institution_command", required=True
    )
    p = inst.add_parser("add", help="register a lab and issue its first API key")
    p.add_argument("--uscc", required=True, help="unified social credit code (18 characters)")
    p.add_argument("--region", required=True, help="6-digit administrative region code")
    p.add_argument("--name", required=True)
    p.set_defaults(func=_cmd_institution)
    p = inst.add_parser("list", help="list labs")
    p.set_defaults(func=_cmd_institution)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="key_command", required=True)
    p = key.add_parser("issue", help="issue another key for a lab or auditor")
    p.add_argument("--institution")
    p.add_argument("--auditor", help="an auditor or agency account id")
    p.add_argument(
        "--algorithm",
        choices=["hmac-sha256", "hmac-sm3"],
        default="hmac-sha256",
        help="request signing of the key: JZ1-HMAC-SHA256 (default) or JZ1-HMAC-SM3",
    )
    p.add_argument("--expires-in-days", type=float, help="the key signs nothing after this")
    p.set_defaults(func=_cmd_key)
    p = key.add_parser("list", help="list keys (never secrets)")
    p.add_argument("--institution")
    p.add_argument("--auditor")
    p.set_defaults(func=_cmd_key)
    p = key.add_parser("rotate", help="issue a new key and revoke the given one")
    p.add_argument("key_id")
    p.set_defaults(func=_cmd_key)
    p = key.add_parser("revoke", help="revoke a key")
    p.add_argument("key_id")
    p.set_defaults(func=_cmd_key)

    aud = sub.add_parser("auditor", help="auditor accounts").add_subparsers(
        dest="auditor_command", required=True
    )
    p = aud.add_parser("add", help="create an auditor account and its first API key")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--region",
        help="limit the account to labs registered in this region: a province (440000), "
        "city (440300) or county (440305) code; default: every lab",
    )
    p.set_defaults(func=_cmd_auditor)

    agency = sub.add_parser("agency", help="supervision-agency (监督机构) accounts").add_subparsers(
        dest="agency_command", required=True
    )
    p = agency.add_parser(
        "add", help="create a supervision-agency account for a region and its first API key"
    )
    p.add_argument("--name", required=True)
    p.add_argument(
        "--region",
        required=True,
        help="the agency's region: a province (440000), city (440300) or county (440305) code",
    )
    p.set_defaults(func=_cmd_agency)

    reg = sub.add_parser(
        "registry", help="the supervision agencies' register (docs/registry.md)"
    ).add_subparsers(dest="registry_command", required=True)
    p = reg.add_parser(
        "list", help="the registry records, oldest first, one JSON object a line "
        '({"record", "leaf_hash"})'
    )
    p.add_argument("--institution", help="only this lab's (USCC)")
    p.add_argument(
        "--kind", choices=["witness", "project", "device", "staff", "qualification"],
        help="only records of this body.kind",
    )
    p.set_defaults(func=_cmd_registry)

    console = sub.add_parser(
        "console", help="sign-in to the regulators' console (/console/, docs/console.md)"
    ).add_subparsers(dest="console_command", required=True)
    p = console.add_parser(
        "set-password",
        help="give an auditor or agency account a login name, a password (argon2id) and a "
        "new TOTP secret (printed once, with its otpauth:// URI); ends its open sessions",
    )
    p.add_argument("account", help="the account id `auditor add` / `agency add` printed")
    p.add_argument("--login", required=True, help="the name typed at sign-in")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    p.add_argument("--keep-totp", action="store_true",
                   help="keep the account's TOTP secret (only change the password)")
    p.set_defaults(func=_cmd_console)

    ca = sub.add_parser("ca", help="report-signing certificates").add_subparsers(
        dest="ca_command", required=True
    )
    ca.add_parser("roots", help="print the PEM roots a verifier should trust").set_defaults(
        func=_cmd_ca_roots
    )
    ca.add_parser(
        "trust-list", help="print the signed trust list of QR-signing keys (§7.5)"
    ).set_defaults(func=_cmd_qr_keys, qr_action="trust-list")
    qr = ca.add_parser("qr-keys", help="the QR-payload signing keys (docs/offline-qr.md)")
    qr.set_defaults(func=_cmd_qr_keys, qr_action="list")
    qr_sub = qr.add_subparsers(dest="qr_action")
    qr_sub.add_parser("list", help="the keys of the trust list, the signing one last")
    p = qr_sub.add_parser(
        "rotate", help="a new signing key; the old one signs no more after --grace seconds "
        "and stays valid for what it signed"
    )
    p.add_argument("--grace", type=int, default=None, metavar="SECONDS",
                   help="how long the old key may still sign (default 300)")
    p.add_argument("--algorithm", dest="qr_algorithm", choices=["es256", "sm2"],
                   default="es256",
                   help="ES256 (default) or SM2 with SM3 (§7.7; docs/national-crypto.md)")
    p = qr_sub.add_parser(
        "remove", help="drop a key from the trust list: what it signed no longer verifies"
    )
    p.add_argument("kid", metavar="KID", help="16 hex digits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error, not a traceback, for known failures
        from pydantic import ValidationError

        from service.errors import JianzhengError

        if isinstance(exc, JianzhengError):
            print(f"jianzheng: {exc.code}: {exc.detail}", file=sys.stderr)
            return 1
        if isinstance(exc, ValidationError):  # the settings (JZ_* variables) are refused
            print("jianzheng: the settings are refused:", file=sys.stderr)
            for err in exc.errors():
                where = ".".join(str(p) for p in err.get("loc", ()))
                message = str(err.get("msg", "")).removeprefix("Value error, ")
                print(f"{where + ': ' if where else ''}{message}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
