"""Migrations: the models and `alembic upgrade head` agree, and the newest step reverses."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from service.storage.db import alembic_config, make_engine, upgrade
from service.storage.models import Base


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_models_match_the_migrated_schema(empty_db_url: str) -> None:
    db_url = empty_db_url  # every migration runs here, from an empty database
    upgrade(db_url)
    assert _diff(db_url) == []


def test_hot_insert_indexes_are_lean_and_the_step_reverses(empty_db_url: str) -> None:
    db_url = empty_db_url
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        names = {ix["name"] for ix in inspect(engine).get_indexes("records")}
        assert "ix_records_type" not in names
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                method = conn.execute(
                    text(
                        "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
                        " WHERE c.relname = 'ix_auth_nonces_seen_at'"
                    )
                ).scalar_one()
            assert method == "brin"
        command.downgrade(alembic_config(db_url), "0004_change_stamp")
        engine.dispose()
        assert "ix_records_type" in {ix["name"] for ix in inspect(engine).get_indexes("records")}
        upgrade(db_url)
        engine.dispose()
        assert "ix_records_type" not in {
            ix["name"] for ix in inspect(engine).get_indexes("records")
        }
    finally:
        engine.dispose()


def test_each_test_database_starts_at_the_newest_migration(db_url: str) -> None:
    """The per-test copies of the session's template are at head, so the upgrade that
    `build_state` runs (as in production) has nothing to do."""
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
        assert _diff(db_url) == []
    finally:
        engine.dispose()
