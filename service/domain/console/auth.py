"""Console sign-in for auditor and agency accounts: argon2id passwords, TOTP (RFC 6238),
sessions, sign-in throttling and the access log.

- A password is stored only as an argon2id hash (argon2-cffi's defaults, RFC 9106).
- The TOTP secret (20 random bytes, shown once as base32 and an otpauth:// URI) is sealed
  with the master key (accounts.SecretBox, associated data `totp:{account}`); a code is
  accepted for the current 30-second step or one step either side, and each step once.
- A session is a random 32-byte token in a cookie; the database keeps only its SHA-256,
  the account, a CSRF token, and when it was created and last used. It ends on sign-out,
  after `console.idle_timeout_s` unused, or `console.max_session_s` after sign-in.
- Throttling: a login name with `signin_max_failures` failed attempts within
  `signin_window_s` is refused (even with the right password) until the window passes;
  one client address gets `signin_ip_factor` times as many.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.clock import rfc3339, utc_now
from service.domain.accounts import AuditScope, SecretBox, region_prefix
from service.errors import Invalid, NotFound
from service.settings import ConsoleSettings, Settings
from service.storage.models import Auditor, ConsoleAccess, ConsoleSession, ConsoleSignin

TOTP_STEP_S = 30
TOTP_DIGITS = 6
TOTP_SECRET_BYTES = 20
TOTP_ISSUER = "见证监管端"
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 256
_LOGIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")
_HASHER = PasswordHasher()
#: A hash verified when the login is unknown, so that both cost the same time.
_DUMMY_HASH = _HASHER.hash("jianzheng-console-no-such-account")

ACTION_VIEW = "view_report"
ACTION_BUNDLE = "download_bundle"
ACTION_PDF = "download_pdf"
ACTION_CERTIFICATE = "download_certificate"


# --------------------------------------------------------------------------- TOTP


def hotp(key: bytes, counter: int, digits: int = TOTP_DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 HOTP: dynamic truncation of HMAC(key, counter)."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp(key: bytes, at: float, *, digits: int = TOTP_DIGITS, digest: str = "sha1",
         step_s: int = TOTP_STEP_S) -> str:
    """RFC 6238 TOTP at Unix time `at` (T0 = 0)."""
    return hotp(key, int(at // step_s), digits, digest)


def totp_uri(secret_b32: str, login: str) -> str:
    label = quote(f"{TOTP_ISSUER}:{login}")
    return (f"otpauth://totp/{label}?secret={secret_b32}&issuer={quote(TOTP_ISSUER)}"
            f"&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_S}")


def _totp_key(settings: Settings, account: Auditor) -> bytes | None:
    if account.totp_ciphertext is None:
        return None
    secret = SecretBox.from_settings(settings).open(f"totp:{account.id}",
                                                    bytes(account.totp_ciphertext))
    return base64.b32decode(secret)


def _totp_step_ok(key: bytes, code: str, now: float, last_step: int | None) -> int | None:
    """The time step `code` belongs to (now, or one either side) not used before, or None."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    current = int(now // TOTP_STEP_S)
    for step in (current, current - 1, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(hotp(key, step), code):
            return step
    return None


# --------------------------------------------------------------------------- set-up (CLI)


def validate_login(value: str) -> str:
    login = value.strip().lower() if isinstance(value, str) else ""
    if not 3 <= len(login) <= 64 or not set(login) <= _LOGIN_CHARS:
        raise Invalid("invalid_login",
                      "a login name has 3 to 64 of a-z, 0-9 and . _ - @")
    return login


def validate_password(value: str) -> str:
    if not isinstance(value, str) or not MIN_PASSWORD_CHARS <= len(value) <= MAX_PASSWORD_CHARS:
        raise Invalid("invalid_password",
                      f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    if len(set(value)) < 5:
        raise Invalid("invalid_password", "the password repeats too few characters")
    return value


def set_credentials(
    session: Session, settings: Settings, *, account_id: str, login: str, password: str,
    new_totp: bool = True,
) -> dict[str, Any]:
    """Give an auditor or agency account a login name, a password and (again) a TOTP secret;
    ends its open sessions. The answer carries the TOTP secret, only there."""
    account = session.get(Auditor, account_id)
    if account is None:
        raise NotFound("unknown_auditor", f"no auditor or agency account {account_id}")
    login = validate_login(login)
    other = session.scalar(select(Auditor.id).where(Auditor.login == login))
    if other is not None and other != account.id:
        raise Invalid("login_taken", f"the login name {login} belongs to another account")
    account.login = login
    account.password_hash = _HASHER.hash(validate_password(password))
    out: dict[str, Any] = {"account": account.id, "name": account.name, "login": login,
                           "kind": account.kind, "region": account.region_scope}
    if new_totp or account.totp_ciphertext is None:
        secret_b32 = base64.b32encode(secrets.token_bytes(TOTP_SECRET_BYTES)).decode("ascii")
        account.totp_ciphertext = SecretBox.from_settings(settings).seal(
            f"totp:{account.id}", secret_b32)
        account.totp_last_step = None
        out["totp_secret"] = secret_b32
        out["totp_uri"] = totp_uri(secret_b32, login)
    end_sessions(session, account.id)
    session.flush()
    return out


def end_sessions(session: Session, account_id: str) -> None:
    now = time.time()
    for row in session.scalars(select(ConsoleSession).where(
            ConsoleSession.account_id == account_id, ConsoleSession.ended_at.is_(None))):
        row.ended_at = now


# --------------------------------------------------------------------------- sign-in


@dataclass(frozen=True)
class SignedIn:
    token: str
    account_id: str


class SigninRefused(Exception):
    """Why a sign-in was refused: `bad_credentials` or `throttled` (retry_after_s)."""

    def __init__(self, reason: str, retry_after_s: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def _throttled(session: Session, cfg: ConsoleSettings, login: str, ip: str, now: float) -> int:
    """Seconds until a sign-in may be tried again (0: now)."""
    since = now - cfg.signin_window_s
    waits = []
    for column, value, limit in ((ConsoleSignin.login, login, cfg.signin_max_failures),
                                 (ConsoleSignin.ip, ip,
                                  cfg.signin_max_failures * cfg.signin_ip_factor)):
        count, oldest = session.execute(
            select(func.count(ConsoleSignin.id), func.min(ConsoleSignin.at)).where(
                column == value, ConsoleSignin.at >= since, ConsoleSignin.ok.is_(False))
        ).one()
        if count >= limit:
            waits.append(int(oldest + cfg.signin_window_s - now) + 1)
    return max(waits, default=0)


def sign_in(
    session: Session, settings: Settings, *, login: str, password: str, code: str, ip: str,
    now: float | None = None,
) -> SignedIn:
    """A new session for the account, or SigninRefused. The caller commits either way (the
    attempt is recorded)."""
    now = time.time() if now is None else now
    cfg = settings.console
    login = (login or "").strip().lower()[:64]
    ip = ip[:64]
    session.execute(delete(ConsoleSignin).where(ConsoleSignin.at < now - 2 * cfg.signin_window_s))
    wait = _throttled(session, cfg, login, ip, now)
    if wait:
        session.add(ConsoleSignin(login=login, ip=ip, at=now, ok=False))
        raise SigninRefused("throttled", wait)
    account = session.scalar(select(Auditor).where(Auditor.login == login)) if login else None
    ok = False
    try:
        _HASHER.verify(account.password_hash if account and account.password_hash
                       else _DUMMY_HASH, password or "")
        ok = account is not None and account.password_hash is not None
    except (VerificationError, InvalidHashError):
        ok = False
    step = None
    if ok and account is not None:
        key = _totp_key(settings, account)
        step = _totp_step_ok(key, code or "", now, account.totp_last_step) if key else None
    session.add(ConsoleSignin(login=login, ip=ip, at=now, ok=step is not None))
    if account is None or step is None:
        raise SigninRefused("bad_credentials")
    account.totp_last_step = step
    assert account.password_hash is not None
    if _HASHER.check_needs_rehash(account.password_hash):
        account.password_hash = _HASHER.hash(password)
    token = secrets.token_urlsafe(32)
    session.add(ConsoleSession(token_sha256=_token_hash(token), account_id=account.id,
                               csrf_token=secrets.token_urlsafe(32), created_at=now,
                               last_seen_at=now))
    session.flush()
    return SignedIn(token, account.id)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ConsoleUser:
    """The account behind a live console session."""

    account_id: str
    name: str
    kind: str
    login: str
    region: str | None
    csrf_token: str
    session_key: str

    @property
    def scope(self) -> AuditScope:
        return AuditScope(self.region)


def current_user(session: Session, settings: Settings, token: str | None,
                 now: float | None = None) -> ConsoleUser | None:
    """The live session's user, its last use moved to now; None if there is none (ended,
    idle too long, too old, or the account lost its password)."""
    if not token or len(token) > 100:
        return None
    now = time.time() if now is None else now
    row = session.get(ConsoleSession, _token_hash(token))
    if row is None or row.ended_at is not None:
        return None
    cfg = settings.console
    if now - row.last_seen_at > cfg.idle_timeout_s or now - row.created_at > cfg.max_session_s:
        row.ended_at = now
        return None
    account = session.get(Auditor, row.account_id)
    if account is None or account.password_hash is None or account.login is None:
        return None
    row.last_seen_at = now
    return ConsoleUser(account.id, account.name, account.kind, account.login,
                       account.region_scope, row.csrf_token, row.token_sha256)


def new_form_token() -> str:
    """The sign-in form's CSRF token (also set in a cookie: double submit)."""
    return secrets.token_urlsafe(32)


def same_token(cookie: str | None, sent: str | None) -> bool:
    return bool(cookie) and bool(sent) and hmac.compare_digest(
        (cookie or "").encode(), (sent or "").encode())


def csrf_ok(user: ConsoleUser, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(user.csrf_token.encode(), (sent or "").encode())


def sign_out(session: Session, token: str | None) -> None:
    if not token:
        return
    row = session.get(ConsoleSession, _token_hash(token))
    if row is not None and row.ended_at is None:
        row.ended_at = time.time()


# --------------------------------------------------------------------------- access log


def log_access(session: Session, user: ConsoleUser, *, action: str, report_code: str,
               institution: str, ip: str) -> None:
    session.add(ConsoleAccess(
        account_id=user.account_id, account_name=user.name[:200],
        region=user.region or "", action=action, report_code=report_code,
        institution=institution, ip=ip[:64], at=utc_now()))
    session.flush()


def access_log(session: Session, user: ConsoleUser, *, limit: int = 200,
               before_id: int | None = None) -> list[dict[str, Any]]:
    """Entries of accounts whose region lies within the viewer's (the viewer's own and those
    of the accounts it supervises), newest first."""
    query = select(ConsoleAccess)
    if user.region is not None:
        query = query.where(ConsoleAccess.region.startswith(region_prefix(user.region)),
                            ConsoleAccess.region != "")
    if before_id is not None:
        query = query.where(ConsoleAccess.id < before_id)
    rows = session.scalars(query.order_by(ConsoleAccess.id.desc()).limit(limit)).all()
    return [{"id": r.id, "account": r.account_id, "account_name": r.account_name,
             "region": r.region or None, "action": r.action, "report_code": r.report_code,
             "institution": r.institution, "ip": r.ip, "at": rfc3339(r.at)} for r in rows]


# --------------------------------------------------------------------------- CLI


def cli_console(args: Any) -> Any:
    """`jianzheng console set-password ACCOUNT --login NAME` (password from stdin or a
    prompt); prints the account and the new TOTP secret and URI."""
    import getpass
    import sys

    from service.domain.accounts import _run

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("新密码 (new password): ")
        if getpass.getpass("再次输入 (again): ") != password:
            raise Invalid("invalid_password", "the two passwords differ")
    return _run(lambda s, st: set_credentials(
        s, st, account_id=args.account, login=args.login, password=password,
        new_totp=not args.keep_totp))
