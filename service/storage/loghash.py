"""The log hash of a deployment's evidence log: SHA-256 (INTERFACE §1) or SM3 (§7.7).

A deployment keeps one log hash for its whole life: every leaf, every Merkle node and every
batch root it ever anchored to its registry is of that kind (a chain holds batches of one
kind per registry). `pin` records the hash in `service_state` at start-up
(`JZ_EVIDENCE__HASH`) and refuses a database whose log is of the other kind; `of` reads it
back for whatever is written or proved (cached per connection pool: it never changes once
pinned). A database from before this setting existed holds SHA-256 records.
"""

from __future__ import annotations

import weakref

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from service.errors import IntegrityFault
from service.storage.models import KeyValue, Record
from verifier.merkle import DEFAULT_ALG, HASH_ALGS, HashAlg

#: The `service_state` key holding the log hash.
STATE_KEY = "evidence_hash"

_pinned: weakref.WeakKeyDictionary[Pool, HashAlg] = weakref.WeakKeyDictionary()


def _engine(bind: Session | Connection | Engine) -> Engine:
    if isinstance(bind, Session):
        got = bind.get_bind()
        return got if isinstance(got, Engine) else got.engine
    if isinstance(bind, Connection):
        return bind.engine
    return bind


def _read(conn: Connection) -> HashAlg | None:
    value = conn.execute(select(KeyValue.value).where(KeyValue.key == STATE_KEY)).scalar()
    if value is None:
        return None
    if value not in HASH_ALGS:
        raise IntegrityFault(
            "log_hash_unknown", f"service_state {STATE_KEY} = {value!r} is no known log hash"
        )
    return value


def pin(engine: Engine, wanted: HashAlg) -> HashAlg:
    """Record `wanted` as the database's log hash, or check it is the one recorded.

    Raises IntegrityFault `log_hash_mismatch` when the database already holds a log of the
    other kind (recorded, or SHA-256 records from before the setting existed)."""
    try:
        with engine.begin() as conn:
            stored = _read(conn)
            if stored is None:
                has_records = conn.execute(select(Record.id).limit(1)).first() is not None
                stored = DEFAULT_ALG if has_records else wanted
                conn.execute(insert(KeyValue).values(key=STATE_KEY, value=stored))
    except IntegrityError:
        # Several processes (`jianzheng api --workers N`, the worker) started on a new
        # database at once and another recorded it first: read what it recorded.
        with engine.connect() as conn:
            stored = _read(conn)
        if stored is None:  # pragma: no cover - the row that collided is there
            raise
    if stored != wanted:
        raise IntegrityFault(
            "log_hash_mismatch",
            f"JZ_EVIDENCE__HASH is {wanted!r} but this database's evidence log is "
            f"{stored!r}: a deployment keeps the log hash it started with (start a new "
            "database and registry for the other kind)",
        )
    _pinned[engine.pool] = stored
    return stored


def of(bind: Session | Connection | Engine) -> HashAlg:
    """The log hash of the database behind `bind` (SHA-256 when none is recorded)."""
    engine = _engine(bind)
    alg = _pinned.get(engine.pool)
    if alg is not None:
        return alg
    if isinstance(bind, Session):
        stored = _read(bind.connection())
    elif isinstance(bind, Connection):
        stored = _read(bind)
    else:
        with engine.connect() as conn:
            stored = _read(conn)
    if stored is None:
        return DEFAULT_ALG  # not cached: a later pin decides
    _pinned[engine.pool] = stored
    return stored
