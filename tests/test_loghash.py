"""The deployment's log hash is pinned once, also when several processes start on a new
database at the same moment (`jianzheng api --workers N` beside the worker)."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import IntegrityFault
from service.storage import loghash
from service.storage.db import make_engine, upgrade


def test_a_second_process_that_lost_the_race_reads_the_winner(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(db_url)
        with engine.begin() as conn:  # the process that won pinned it and committed ...
            conn.execute(loghash.KeyValue.__table__.delete().where(
                loghash.KeyValue.key == loghash.STATE_KEY))
            conn.execute(loghash.insert(loghash.KeyValue).values(
                key=loghash.STATE_KEY, value="sm3"))
        real_read = loghash._read
        calls: list[int] = []

        def read_too_early(conn: Any) -> Any:  # ... after this one had looked
            calls.append(1)
            return None if len(calls) == 1 else real_read(conn)

        monkeypatch.setattr(loghash, "_read", read_too_early)
        with pytest.raises(IntegrityFault) as err:  # wanted sha256, the winner pinned sm3
            loghash.pin(engine, "sha256")
        assert err.value.code == "log_hash_mismatch"
        calls.clear()
        assert loghash.pin(engine, "sm3") == "sm3"
    finally:
        engine.dispose()
