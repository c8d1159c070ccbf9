"""`jianzheng backup` (R20): a restorable database snapshot (SQLite backup API, pg_dump
restored with pg_restore), every stored file re-hashed, incremental on a second run, and
a file whose bytes changed reported instead of copied."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from service import cli
from service.errors import JianzhengError
from service.state import ServiceState
from service.storage.backup import backup
from tests.fixtures.db import PG_ADMIN_URL
from tests.labkit import add_lab, client_for, make_app
from tests.recordkit import ago, build_chain


def _count_records_restored(state: ServiceState, dest: Path) -> int:
    url = make_url(state.settings.database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(dest / "jianzheng.db") as conn:
            return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    name = "jz_restore_" + secrets.token_hex(4)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    target = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", "--dbname", target, str(dest / "jianzheng.pgdump")],
            check=True, capture_output=True, text=True,
        )
        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT count(*) FROM records").fetchone()
            assert row is not None
            return int(row[0])
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backup_restores_and_is_incremental(app_state: ServiceState, tmp_path: Path) -> None:
    app = make_app(app_state)
    lab = add_lab(app_state, 97)
    with client_for(app, lab) as c:
        build_chain(c, sample_code="YP-BACKUP", finished_at=ago(60))
    blobs = sorted(p for p in app_state.settings.blob_dir.glob("??/??/*") if p.is_file())
    assert len(blobs) >= 2  # the contract PDF and the sample photo at least

    dest = tmp_path / "backup"
    first = backup(app_state.settings, dest)
    assert first.records > 0 and first.blobs_total == len(blobs) == first.blobs_copied
    assert first.corrupt_blobs == []
    assert _count_records_restored(app_state, dest) == first.records
    for blob in blobs:
        copy = dest / "blobs" / blob.name[:2] / blob.name[2:4] / blob.name
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == blob.name
    manifest = json.loads((dest / "backup.json").read_text("utf-8"))
    assert manifest["records"] == first.records and manifest["blobs_total"] == len(blobs)

    # a second run copies nothing new; a source file whose bytes changed is reported
    again = backup(app_state.settings, dest)
    assert again.blobs_copied == 0 and again.blobs_total == len(blobs)
    newer = tmp_path / "backup2"
    blobs[0].write_bytes(b"changed on disk")
    third = backup(app_state.settings, newer)
    assert third.corrupt_blobs == [blobs[0].name]
    assert not (newer / "blobs" / blobs[0].name[:2] / blobs[0].name[2:4] / blobs[0].name).exists()

    with pytest.raises(JianzhengError) as inside:
        backup(app_state.settings, app_state.settings.data_dir / "bk")
    assert inside.value.code == "backup_inside_data_dir"


def test_backup_cli(
    tmp_path: Path, cli_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["migrate"]) == 0
    capsys.readouterr()
    assert cli.main(["backup", str(tmp_path / "bk")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["database"] == "sqlite" and out["database_file"] == "jianzheng.db"
    assert (tmp_path / "bk" / "jianzheng.db").exists()
    assert cli.main(["backup", str(cli_data_dir / "x")]) == 1
    assert "backup_inside_data_dir" in capsys.readouterr().err
