"""Institutions (labs), auditors and their API keys.

A key is a pair (key id, secret). The secret is generated with `secrets`, shown once
when issued, and stored only encrypted: AES-256-GCM under a key derived with
HKDF-SHA256 from `settings.security.master_key`, with the key id as associated data
(so a ciphertext copied onto another key's row does not decrypt). Secrets never
appear in logs, reprs or error messages.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from stdnum.cn import uscc as stdnum_uscc
from stdnum.exceptions import ValidationError as StdnumValidationError

from service.clock import as_utc, rfc3339, utc_now
from service.domain.evidence import new_record_id
from service.errors import Conflict, Forbidden, Invalid, NotFound
from service.settings import Settings
from service.storage.models import ApiKey, Auditor, Institution

ROLE_LAB = "lab"
ROLE_AUDITOR = "auditor"
#: A supervision agency (监督机构): reads its region like an auditor, writes its registry.
ROLE_AGENCY = "agency"
#: Request-signing algorithms a key may be issued for (service.client.ALGORITHMS).
KEY_ALGORITHMS = ("hmac-sha256", "hmac-sm3")

#: Key ids: a role prefix and 20 random hex characters (80 bits); not secret.
KEY_ID_PREFIX = {ROLE_LAB: "jzl_", ROLE_AUDITOR: "jza_", ROLE_AGENCY: "jzg_"}
KEY_ID_RANDOM_BYTES = 10
#: Secrets: 32 random bytes, URL-safe base64 without padding (43 characters).
SECRET_BYTES = 32
MAX_NAME_CHARS = 200
_HKDF_INFO = b"jianzheng/api-key-secret/v1"
_GCM_NONCE_BYTES = 12
_REGION_RE = re.compile(r"^[1-8][0-9]{5}$")
#: First two digits of a Chinese administrative division code (province level).
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 "
    "64 65 71 81 82".split()
)


# --------------------------------------------------------------------------- validation


def validate_uscc(value: str) -> str:
    """The unified social credit code in compact upper-case form, or a 422 `invalid_uscc`."""
    if not isinstance(value, str) or len(value) > 40:
        raise Invalid("invalid_uscc", "a unified social credit code has 18 characters")
    try:
        return str(stdnum_uscc.validate(value.upper()))
    except StdnumValidationError as exc:
        raise Invalid(
            "invalid_uscc", f"not a valid unified social credit code: {exc}"
        ) from None


def validate_region(value: str) -> str:
    """A 6-digit administrative region code (GB/T 2260), or a 422 `invalid_region`."""
    value = value.strip() if isinstance(value, str) else ""
    if not _REGION_RE.match(value) or value[:2] not in _PROVINCES:
        raise Invalid(
            "invalid_region", "the region must be a 6-digit administrative region code"
        )
    return value


def validate_name(value: str) -> str:
    value = value.strip() if isinstance(value, str) else ""
    if not value or len(value) > MAX_NAME_CHARS:
        raise Invalid("invalid_name", f"a name has 1 to {MAX_NAME_CHARS} characters")
    return value


# --------------------------------------------------------------------------- secrets at rest


class SecretBox:
    """AES-256-GCM with a key derived from the master key; associated data = key id."""

    def __init__(self, master_key: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            master_key.encode("utf-8")
        )
        self._aead = AESGCM(derived)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.security.master_key.get_secret_value())

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    def seal(self, key_id: str, secret: str) -> bytes:
        nonce = os.urandom(_GCM_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode("utf-8"), key_id.encode("ascii"))

    def open(self, key_id: str, ciphertext: bytes) -> str:
        """The secret; raises ValueError if the ciphertext or master key does not match."""
        nonce, body = ciphertext[:_GCM_NONCE_BYTES], ciphertext[_GCM_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, key_id.encode("ascii")).decode("utf-8")
        except InvalidTag:
            raise ValueError(f"cannot decrypt the secret of key {key_id}") from None


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret: str = field(repr=False)
    role: str
    institution: str | None
    auditor_id: str | None
    algorithm: str = "hmac-sha256"
    expires_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key_id": self.key_id,
            "secret": self.secret,
            "role": self.role,
            "algorithm": self.algorithm,
        }
        if self.institution:
            out["institution"] = self.institution
        if self.auditor_id:
            out["auditor_id"] = self.auditor_id
        if self.expires_at is not None:
            out["expires_at"] = rfc3339(self.expires_at)
        return out


@dataclass(frozen=True)
class KeyInfo:
    """What authentication needs about a key (the secret decrypted, never logged)."""

    key_id: str
    secret: str = field(repr=False)
    role: str
    institution: str | None
    auditor_id: str | None
    revoked: bool
    algorithm: str = "hmac-sha256"
    #: Unix seconds after which the key signs nothing; None: no expiry.
    expires_at: float | None = None


def new_key_id(role: str) -> str:
    return KEY_ID_PREFIX[role] + secrets.token_hex(KEY_ID_RANDOM_BYTES)


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def issue_key(
    session: Session,
    settings: Settings,
    *,
    institution: str | None = None,
    auditor_id: str | None = None,
    algorithm: str = "hmac-sha256",
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Create a key for exactly one of a lab or an auditor/agency account (caller commits);
    `algorithm` is the request signing it uses (§5.1, or §7.7 `hmac-sm3`)."""
    if (institution is None) == (auditor_id is None):
        raise Invalid("validation_error", "give exactly one of institution or auditor")
    if algorithm not in KEY_ALGORITHMS:
        raise Invalid(
            "invalid_algorithm",
            f"algorithm must be one of {', '.join(KEY_ALGORITHMS)}, not {algorithm!r}",
        )
    if expires_at is not None and expires_at <= utc_now():
        raise Invalid("invalid_expiry", "the key's expiry must lie in the future")
    if institution is not None:
        institution = validate_uscc(institution)
        if session.get(Institution, institution) is None:
            raise NotFound("unknown_institution", f"no institution {institution}")
        role = ROLE_LAB
    else:
        account = session.get(Auditor, auditor_id)
        if account is None:
            raise NotFound("unknown_auditor", f"no auditor {auditor_id}")
        role = ROLE_AGENCY if account.kind == ROLE_AGENCY else ROLE_AUDITOR
    key_id = new_key_id(role)
    secret = new_secret()
    session.add(
        ApiKey(
            key_id=key_id,
            role=role,
            institution=institution,
            auditor_id=auditor_id,
            secret_ciphertext=SecretBox.from_settings(settings).seal(key_id, secret),
            created_at=utc_now(),
            algorithm=algorithm,
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedKey(key_id, secret, role, institution, auditor_id, algorithm, expires_at)


def revoke_key(session: Session, key_id: str) -> dict[str, Any]:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("unknown_key", f"no key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utc_now()
    session.flush()
    _cache_forget(key_id)
    return _key_json(key)


def rotate_key(session: Session, settings: Settings, key_id: str) -> dict[str, Any]:
    """Issue a new key for the same owner and revoke the old one, in one transaction."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("unknown_key", f"no key {key_id}")
    if key.revoked_at is not None:
        raise Conflict("key_revoked", f"key {key_id} is already revoked")
    issued = issue_key(
        session,
        settings,
        institution=key.institution,
        auditor_id=key.auditor_id,
        algorithm=key.algorithm,
    )
    revoke_key(session, key_id)
    return {**issued.as_json(), "revoked_key_id": key_id}


def list_keys(
    session: Session, *, institution: str | None = None, auditor_id: str | None = None
) -> list[dict[str, Any]]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id)
    if institution is not None:
        query = query.where(ApiKey.institution == validate_uscc(institution))
    if auditor_id is not None:
        query = query.where(ApiKey.auditor_id == auditor_id)
    return [_key_json(k) for k in session.scalars(query)]


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "role": key.role,
        "institution": key.institution,
        "auditor_id": key.auditor_id,
        "algorithm": key.algorithm,
        "created_at": rfc3339(key.created_at),
        "revoked_at": rfc3339(key.revoked_at) if key.revoked_at else None,
        "expires_at": rfc3339(key.expires_at) if key.expires_at else None,
    }


# Decrypted secrets are cached per process, keyed by (key id, ciphertext): AES-GCM costs
# little, but the row is read on every request anyway (for revocation), so the cache only
# saves the decryption. A revoked key is refused from the row, never from the cache.
_SECRET_CACHE: dict[tuple[str, bytes], str] = {}
_SECRET_CACHE_MAX = 10_000
_SECRET_CACHE_LOCK = threading.Lock()
_BOXES: dict[str, SecretBox] = {}


def _box_for(settings: Settings) -> SecretBox:
    master = settings.security.master_key.get_secret_value()
    box = _BOXES.get(master)
    if box is None:
        box = SecretBox(master)
        _BOXES.clear()
        _BOXES[master] = box
    return box


def _cache_forget(key_id: str) -> None:
    with _SECRET_CACHE_LOCK:
        for k in [k for k in _SECRET_CACHE if k[0] == key_id]:
            del _SECRET_CACHE[k]


def lookup_key(session: Session, settings: Settings, key_id: str) -> KeyInfo | None:
    """The key with its secret decrypted, or None if there is no such key."""
    row = session.execute(
        select(
            ApiKey.role,
            ApiKey.institution,
            ApiKey.auditor_id,
            ApiKey.secret_ciphertext,
            ApiKey.revoked_at,
            ApiKey.algorithm,
            ApiKey.expires_at,
        ).where(ApiKey.key_id == key_id)
    ).one_or_none()
    if row is None:
        return None
    role, institution, auditor_id, ciphertext, revoked_at, algorithm, expires_at = row
    cache_key = (key_id, bytes(ciphertext))
    secret = _SECRET_CACHE.get(cache_key)
    if secret is None:
        secret = _box_for(settings).open(key_id, bytes(ciphertext))
        with _SECRET_CACHE_LOCK:
            if len(_SECRET_CACHE) >= _SECRET_CACHE_MAX:
                _SECRET_CACHE.clear()
            _SECRET_CACHE[cache_key] = secret
    return KeyInfo(
        key_id,
        secret,
        role,
        institution,
        auditor_id,
        revoked_at is not None,
        algorithm or "hmac-sha256",
        as_utc(expires_at).timestamp() if expires_at is not None else None,
    )


# --------------------------------------------------------------------------- accounts


def add_institution(
    session: Session, settings: Settings, *, uscc: str, region: str, name: str
) -> dict[str, Any]:
    """Register a lab and issue its first key; the secret is in the answer, only there."""
    code = validate_uscc(uscc)
    region = validate_region(region)
    name = validate_name(name)
    if session.get(Institution, code) is not None:
        raise Conflict("institution_exists", f"institution {code} is already registered")
    session.add(Institution(uscc=code, region=region, name=name, created_at=utc_now()))
    session.flush()
    key = issue_key(session, settings, institution=code)
    return {"institution": code, "region": region, "name": name, **key.as_json()}


def list_institutions(session: Session) -> list[dict[str, Any]]:
    return [
        {"institution": i.uscc, "region": i.region, "name": i.name,
         "created_at": rfc3339(i.created_at)}
        for i in session.scalars(select(Institution).order_by(Institution.uscc))
    ]


def add_auditor(
    session: Session, settings: Settings, *, name: str, region: str | None = None
) -> dict[str, Any]:
    """An auditor account and its first key; `region` limits it to the labs registered in
    that province (`440000`), city (`440300`) or county (`440305`)."""
    auditor = Auditor(
        id=new_record_id(),
        name=validate_name(name),
        created_at=utc_now(),
        region_scope=validate_region(region) if region is not None else None,
    )
    session.add(auditor)
    session.flush()
    key = issue_key(session, settings, auditor_id=auditor.id)
    return {
        "auditor": auditor.id,
        "name": auditor.name,
        "region_scope": auditor.region_scope,
        **key.as_json(),
    }


def add_agency(session: Session, settings: Settings, *, name: str, region: str) -> dict[str, Any]:
    """A supervision-agency account (监督机构) for `region` and its first key (§7.8)."""
    account = Auditor(
        id=new_record_id(),
        name=validate_name(name),
        created_at=utc_now(),
        region_scope=validate_region(region),
        kind=ROLE_AGENCY,
    )
    session.add(account)
    session.flush()
    key = issue_key(session, settings, auditor_id=account.id)
    return {
        "account": account.id,
        "name": account.name,
        "region": account.region_scope,
        **key.as_json(),
    }


def region_prefix(region: str) -> str:
    """The code prefix a region covers: 440000 -> 44, 440300 -> 4403, 440305 -> 440305."""
    prefix = region
    while len(prefix) > 2 and prefix.endswith("00"):
        prefix = prefix[:-2]
    return prefix


@dataclass(frozen=True)
class AuditScope:
    """What an auditor may see (R21): every institution, or those of one region."""

    region: str | None

    def covers(self, institution_region: str | None) -> bool:
        if self.region is None:
            return True
        return institution_region is not None and institution_region.startswith(
            region_prefix(self.region)
        )

    def check(self, session: Session, institution: str) -> None:
        """403 `forbidden` for an institution outside the auditor's region."""
        if self.region is None:
            return
        inst = session.get(Institution, institution)
        if inst is None or not self.covers(inst.region):
            raise Forbidden(
                "forbidden",
                f"this auditor account is limited to region {self.region}",
            )

    def institutions(self, session: Session) -> list[str] | None:
        """The institutions an unfiltered audit list may show; None: all of them."""
        query = self.institution_select()
        return None if query is None else list(session.scalars(query))

    def institution_select(self) -> Select[Any] | None:
        """The institutions of `institutions`, as a subquery for an `IN` (None: all): the
        statement stays the same whatever the number of labs in the region (a list of
        them is as many bound parameters, rendered and sent with every statement)."""
        if self.region is None:
            return None
        prefix = region_prefix(self.region)
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return select(Institution.uscc).where(Institution.region >= prefix,
                                              Institution.region < upper)


def audit_scope(session: Session, auditor_id: str | None) -> AuditScope:
    auditor = session.get(Auditor, auditor_id) if auditor_id else None
    return AuditScope(auditor.region_scope if auditor is not None else None)


# --------------------------------------------------------------------------- CLI handlers


def _cli_session(settings: Settings) -> Session:
    from service.storage import loghash
    from service.storage.db import make_engine, make_sessionmaker, upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    loghash.pin(engine, settings.evidence.hash)
    return make_sessionmaker(engine)()


def run_cli(func: Any) -> Any:
    """`func(session, settings)` on the CLI's settings and database, committed."""
    return _run(func)


def _run(func: Any) -> Any:
    from service.settings import get_settings

    settings = get_settings()
    session = _cli_session(settings)
    try:
        result = func(session, settings)
        session.commit()
        return result
    except BaseException:
        session.rollback()
        raise
    finally:
        bind = session.get_bind()
        session.close()
        bind.dispose()  # type: ignore[union-attr]


def cli_institution(args: argparse.Namespace) -> Any:
    if args.institution_command == "add":
        return _run(
            lambda s, st: add_institution(s, st, uscc=args.uscc, region=args.region, name=args.name)
        )
    return _run(lambda s, _st: list_institutions(s))


def cli_key(args: argparse.Namespace) -> Any:
    cmd = args.key_command
    if cmd == "issue":
        expires_at = None
        if getattr(args, "expires_in_days", None):
            expires_at = utc_now() + timedelta(days=float(args.expires_in_days))
        return _run(
            lambda s, st: issue_key(
                s,
                st,
                institution=args.institution,
                auditor_id=args.auditor,
                algorithm=args.algorithm,
                expires_at=expires_at,
            ).as_json()
        )
    if cmd == "list":
        return _run(lambda s, _st: list_keys(s, institution=args.institution,
                                              auditor_id=args.auditor))
    if cmd == "rotate":
        return _run(lambda s, st: rotate_key(s, st, args.key_id))
    return _run(lambda s, _st: revoke_key(s, args.key_id))


def cli_auditor(args: argparse.Namespace) -> Any:
    return _run(lambda s, st: add_auditor(s, st, name=args.name, region=args.region))


def cli_agency(args: argparse.Namespace) -> Any:
    return _run(lambda s, st: add_agency(s, st, name=args.name, region=args.region))
