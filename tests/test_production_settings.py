"""Production refuses unsafe settings, all of them at once, each by its variable name, and the
command line exits non-zero (issue 11, finding 9); `POST /tsa` is not open in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from service.app import create_app
from service.settings import Settings, unsafe_settings
from service.state import build_state
from tests.fixtures.db import make_settings

SAFE: dict[str, Any] = {
    "env": "production",
    "security": {"master_key": "4f1c0e5e2b9d8a7c6b5a49382716f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e"},
    "chain": {
        "rpc_url": "https://besu.internal:8545",
        "registry": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "private_key": "0x" + "5a" * 32,
    },
    "public": {"base_url": "https://jz.zjj.sz.gov.cn"},
    "signing": {
        "ca_passphrase": "a-real-passphrase",
        "pkcs11_module": "/usr/lib/softhsm/libsofthsm2.so",
        "tsa_url": "https://tsa.example.cn/tsa",
    },
}


def _with(**groups: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in SAFE.items()}
    for group, values in groups.items():
        out[group] = {**out.get(group, {}), **values}
    return out


def test_a_safe_production_configuration_starts() -> None:
    assert unsafe_settings(Settings.model_validate(SAFE)) == []


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"public": {"base_url": "http://jz.zjj.sz.gov.cn"}}, "JZ_PUBLIC__BASE_URL"),
        ({"public": {"base_url": "https://127.0.0.1:8000"}}, "JZ_PUBLIC__BASE_URL"),
        ({"public": {"base_url": "https://localhost"}}, "JZ_PUBLIC__BASE_URL"),
        ({"signing": {"pkcs11_module": ""}}, "JZ_SIGNING__PKCS11_MODULE"),
        ({"signing": {"tsa_url": ""}}, "JZ_SIGNING__TSA_URL"),
        ({"signing": {"serve_tsa": True}}, "JZ_SIGNING__SERVE_TSA"),
        ({"security": {"master_key": "short"}}, "JZ_SECURITY__MASTER_KEY"),
        ({"security": {"master_key": "ab" * 16}}, "JZ_SECURITY__MASTER_KEY"),  # 16 bytes
        ({"security": {"master_key": "x" * 64}}, "JZ_SECURITY__MASTER_KEY"),  # no entropy
        ({"chain": {"rpc_url": ""}}, "JZ_CHAIN__RPC_URL"),
    ],
)
def test_each_unsafe_setting_is_named(change: dict[str, Any], variable: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings.model_validate(_with(**change))
    assert variable in str(err.value)


def test_explicit_allowances() -> None:
    allowed = _with(
        signing={"pkcs11_module": "", "tsa_url": "", "allow_platform_ca": True,
                 "allow_builtin_tsa": True}
    )
    assert unsafe_settings(Settings.model_validate(allowed)) == []


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ValidationError) as err:
        Settings.model_validate({"env": "production"})
    text = str(err.value)
    for variable in (
        "JZ_SECURITY__MASTER_KEY", "JZ_CHAIN__PRIVATE_KEY", "JZ_SIGNING__CA_PASSPHRASE",
        "JZ_CHAIN__RPC_URL", "JZ_CHAIN__REGISTRY", "JZ_PUBLIC__BASE_URL",
        "JZ_SIGNING__PKCS11_MODULE", "JZ_SIGNING__TSA_URL",
    ):
        assert variable in text


def test_the_command_line_lists_them_and_exits_non_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JZ_")}
    env.update({"JZ_ENV": "production", "JZ_DATA_DIR": str(tmp_path),
                "JZ_PUBLIC__BASE_URL": "http://127.0.0.1:8000"})
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "chain", "info"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for variable in ("JZ_SECURITY__MASTER_KEY", "JZ_PUBLIC__BASE_URL", "JZ_CHAIN__REGISTRY"):
        assert variable in done.stderr


def test_tsa_is_not_served_in_production(tmp_path: Path) -> None:
    dev = build_state(make_settings(tmp_path, f"sqlite:///{tmp_path / 'd.db'}"), chain=None)
    query = {"Content-Type": "application/timestamp-query"}
    try:
        answer = TestClient(create_app(dev.settings, state=dev)).post(
            "/tsa", content=b"\x30\x00", headers=query
        )
        assert answer.status_code == 200  # a signed rejection of the malformed query
    finally:
        dev.close()
    prod_settings = Settings.model_validate(
        {**SAFE, "data_dir": tmp_path / "p", "database": {"url": f"sqlite:///{tmp_path / 'p.db'}"}}
    )
    prod = build_state(prod_settings, chain=None)
    try:
        refused = TestClient(create_app(prod.settings, state=prod)).post(
            "/tsa", content=b"\x30\x00", headers=query
        )
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    finally:
        prod.close()
