"""`jianzheng console set-password` and the Secure cookie outside development."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service import cli
from service.domain.console import auth
from service.settings import Settings, get_settings
from service.state import build_state
from service.storage.db import make_engine, make_sessionmaker
from tests.console_kit import PASSWORD, csrf_of
from tests.fixtures.db import make_settings
from tests.labkit import make_app


def test_set_password_from_the_cli_then_sign_in(
    cli_data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*argv: str, stdin: str = "") -> dict[str, object]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        assert cli.main(list(argv)) == 0
        out: dict[str, object] = json.loads(capsys.readouterr().out)
        return out

    agency = run("agency", "add", "--name", "南山区建设工程质量监督站", "--region", "440305")
    out = run("console", "set-password", str(agency["account"]), "--login", "NS.Agency",
              "--password-stdin", stdin=PASSWORD + "\n")
    assert out["login"] == "ns.agency" and out["region"] == "440305"
    secret = str(out["totp_secret"])
    assert str(out["totp_uri"]).startswith("otpauth://totp/") and f"secret={secret}" in str(
        out["totp_uri"])
    # a short password is refused with its code, and nothing changes
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["console", "set-password", str(agency["account"]), "--login", "x.y",
                     "--password-stdin"]) == 1
    assert "invalid_password" in capsys.readouterr().err
    kept = run("console", "set-password", str(agency["account"]), "--login", "ns.agency",
               "--password-stdin", "--keep-totp", stdin=PASSWORD + "\n")
    assert "totp_secret" not in kept
    # the account signs in with that password and a code of that secret
    settings = get_settings()
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as s:
            signed = auth.sign_in(s, settings, login="ns.agency", password=PASSWORD,
                                  code=auth.totp(base64.b32decode(secret), time.time()),
                                  ip="cli-test")
            s.commit()
            user = auth.current_user(s, settings, signed.token)
            assert user is not None and user.kind == "agency" and user.region == "440305"
    finally:
        engine.dispose()


def test_cookies_are_secure_outside_development(tmp_path: Path) -> None:
    from service.domain import accounts

    state = build_state(make_settings(tmp_path, f"sqlite:///{tmp_path / 'jz.db'}"), chain=None)
    try:
        # production's own checks (master key, chain, signing) are not what this test is
        # about: the same settings, only `env` changed, unvalidated
        state.settings = Settings.model_construct(
            **{**dict(state.settings), "env": "production"})
        with state.sessions() as s:
            out = accounts.add_agency(s, state.settings, name="监督站", region="440300")
            creds = auth.set_credentials(s, state.settings, account_id=out["account"],
                                         login="prod.agency", password=PASSWORD)
            s.commit()
        http = TestClient(make_app(state), base_url="https://testserver")
        page = http.get("/console/login")
        assert "secure" in page.headers["set-cookie"].lower()
        r = http.post("/console/login", data={
            "login": "prod.agency", "password": PASSWORD, "csrf": csrf_of(page.text),
            "totp": auth.totp(base64.b32decode(creds["totp_secret"]), time.time())},
            follow_redirects=False)
        assert r.status_code == 303, r.text
        cookie = next(v for k, v in r.headers.multi_items()
                      if k == "set-cookie" and v.startswith("jz_console="))
        assert "; secure" in cookie.lower() and "httponly" in cookie.lower()
    finally:
        state.engine.dispose()
