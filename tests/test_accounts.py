"""Institutions, auditors and API keys: validation, secrets at rest, CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from service import cli
from service.domain import accounts
from service.errors import JianzhengError
from service.state import ServiceState
from service.storage.db import session_scope
from service.storage.models import ApiKey
from tests.labkit import add_lab, client_for, make_app, make_uscc, seed_record


def test_uscc_and_region_validation() -> None:
    good = make_uscc(42)
    assert accounts.validate_uscc(good.lower()) == good
    bad_check = good[:-1] + ("0" if good[-1] != "0" else "1")
    for bad in (bad_check, good[:-1], "ABCDEFGHIJKLMNOPQR", "", "9" * 41):
        with pytest.raises(JianzhengError) as exc:
            accounts.validate_uscc(bad)
        assert exc.value.code == "invalid_uscc"
    assert accounts.validate_region("440300") == "440300"
    for bad in ("44030", "4403000", "990000", "44O300", ""):
        with pytest.raises(JianzhengError) as exc:
            accounts.validate_region(bad)
        assert exc.value.code == "invalid_region"


def test_secret_is_encrypted_at_rest_and_bound_to_key_id(
    app_state: ServiceState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lab = add_lab(app_state, 5)
    with app_state.sessions() as s:
        row = s.get(ApiKey, lab.key_id)
        assert row is not None
        blob = bytes(row.secret_ciphertext)
    assert lab.secret.encode() not in blob
    box = accounts.SecretBox.from_settings(app_state.settings)
    assert box.open(lab.key_id, blob) == lab.secret
    with pytest.raises(ValueError):
        box.open("jzl_" + "1" * 20, blob)  # moved onto another key's row
    with pytest.raises(ValueError):
        accounts.SecretBox("another master key").open(lab.key_id, blob)
    # A signed request works, and the secret never shows up in logs or reprs.
    app = make_app(app_state)
    client = client_for(app, lab)
    project = seed_record(app_state, lab.institution or "", "project")
    assert client.issue_code("N-1", project).status_code == 201
    assert lab.secret not in caplog.text
    assert lab.secret not in repr(client)
    with app_state.sessions() as s:
        info = accounts.lookup_key(s, app_state.settings, lab.key_id)
    assert info is not None and lab.secret not in repr(info)


def test_rotate_and_revoke(app_state: ServiceState) -> None:
    lab = add_lab(app_state, 6)
    app = make_app(app_state)
    with session_scope(app_state.sessions) as s:
        rotated = accounts.rotate_key(s, app_state.settings, lab.key_id)
    old = client_for(app, lab)
    r = old.get("/api/v1/reports/44030026AAAAAAAAAAA")
    assert r.status_code == 401 and r.json()["code"] == "auth_unknown_key"
    from tests.labkit import Account

    new = client_for(app, Account(rotated["key_id"], rotated["secret"], lab.institution))
    r = new.get("/api/v1/reports/44030026AAAAAAAAAAA")
    assert r.status_code == 404  # authenticated; the code is unknown
    with session_scope(app_state.sessions) as s:
        keys = accounts.list_keys(s, institution=lab.institution)
    assert [k["key_id"] for k in keys if k["revoked_at"] is None] == [rotated["key_id"]]
    assert all("secret" not in k for k in keys)
    with session_scope(app_state.sessions) as s, pytest.raises(JianzhengError) as exc:
        accounts.rotate_key(s, app_state.settings, lab.key_id)
    assert exc.value.code == "key_revoked"


def test_cli_institution_key_auditor(
    cli_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uscc = make_uscc(9)

    def run(*argv: str) -> object:
        assert cli.main(list(argv)) == 0
        return json.loads(capsys.readouterr().out)

    added = run("institution", "add", "--uscc", uscc, "--region", "440300", "--name", "甲检测")
    assert isinstance(added, dict)
    assert added["institution"] == uscc and len(added["secret"]) >= 40
    listed = run("institution", "list")
    assert isinstance(listed, list)
    assert [i["institution"] for i in listed] == [uscc]
    issued = run("key", "issue", "--institution", uscc)
    keys = run("key", "list", "--institution", uscc)
    assert isinstance(keys, list) and len(keys) == 2
    assert added["secret"] not in json.dumps(keys)
    rotated = run("key", "rotate", issued["key_id"])  # type: ignore[index]
    assert rotated["revoked_key_id"] == issued["key_id"]  # type: ignore[index]
    revoked = run("key", "revoke", added["key_id"])
    assert revoked["revoked_at"] is not None  # type: ignore[index]
    aud = run("auditor", "add", "--name", "审计员")
    assert aud["role"] == "auditor" and aud["secret"]  # type: ignore[index]
    assert aud["region_scope"] is None  # type: ignore[index]
    local = run("auditor", "add", "--name", "南山区监督站", "--region", "440305")
    assert local["region_scope"] == "440305"  # type: ignore[index]
    assert cli.main(["auditor", "add", "--name", "x", "--region", "990000"]) == 1
    assert "invalid_region" in capsys.readouterr().err
    # Invalid input: a one-line error with the stable code, exit 1.
    bad = uscc[:-1] + ("0" if uscc[-1] != "0" else "1")
    assert cli.main(["institution", "add", "--uscc", bad, "--region", "440300",
                     "--name", "x"]) == 1
    assert "invalid_uscc" in capsys.readouterr().err
    assert cli.main(["institution", "add", "--uscc", uscc, "--region", "440300",
                     "--name", "x"]) == 1
    assert "institution_exists" in capsys.readouterr().err
