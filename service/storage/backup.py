"""`jianzheng backup DEST`: a consistent copy of everything the service cannot rebuild
(R20: 数据备份): the database, the content-addressed files, and the platform CA's keys.

Order makes it consistent without stopping the service: the database is snapshotted
first (SQLite's online backup API, or `pg_dump --format=custom`, each a consistent
snapshot), then the files. A file is always stored before the record naming it commits
and is never deleted, so every file the snapshot names exists when the copy runs.
Files are copied incrementally (content-addressed and immutable: one already in DEST is
skipped) and each copied file is re-hashed, so a file whose bytes no longer match its
name is reported, not copied. The anchors on the chain stay the proof of what each
record was; the backup keeps the records and files themselves.

Restore (service stopped): copy `blobs/` and `ca/` into the data directory, and the
database back (`jianzheng.db` into the data directory, or `pg_restore --clean
--if-exists --dbname URL jianzheng.pgdump`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service.clock import rfc3339, utc_now
from service.errors import Invalid, Unavailable
from service.settings import Settings
from service.storage.db import make_engine, make_sessionmaker
from service.storage.models import Batch, Record

MANIFEST = "backup.json"
CHUNK = 1024 * 1024


@dataclass
class BackupResult:
    dest: str
    created_at: str
    database: str
    database_file: str
    records: int
    last_anchored_seq: int
    blobs_total: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    corrupt_blobs: list[str] = field(default_factory=list)


def backup(
    settings: Settings, dest: Path, progress: Callable[[str], None] | None = None
) -> BackupResult:
    say = progress or (lambda _msg: None)
    dest = dest.resolve()
    data_dir = settings.data_dir.resolve()
    if dest == data_dir or data_dir in dest.parents:
        raise Invalid(
            "backup_inside_data_dir", "the backup must go outside the data directory"
        )
    dest.mkdir(parents=True, exist_ok=True)
    url = settings.database_url
    kind = make_url(url).get_backend_name()
    records, last_seq = _counts(url)
    if kind == "sqlite":
        db_file = _sqlite_snapshot(url, dest)
    elif kind == "postgresql":
        db_file = _pg_dump(url, dest)
    else:  # pragma: no cover - the service supports these two
        raise Invalid("backup_unsupported", f"no backup for {kind} databases")
    say(f"database: {db_file} ({records} records, last anchored batch {last_seq})")
    result = BackupResult(
        dest=str(dest),
        created_at=rfc3339(utc_now()),
        database=kind,
        database_file=db_file,
        records=records,
        last_anchored_seq=last_seq,
    )
    _copy_blobs(settings.blob_dir, dest / "blobs", result, say)
    if settings.ca_dir.exists():
        shutil.copytree(settings.ca_dir, dest / "ca", dirs_exist_ok=True)
    (dest / MANIFEST).write_text(
        json.dumps(asdict(result), ensure_ascii=False, indent=2) + "\n", "utf-8"
    )
    return result


def _counts(url: str) -> tuple[int, int]:
    engine = make_engine(url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as session:
            records = session.scalar(select(func.count()).select_from(Record)) or 0
            last = session.scalar(select(func.max(Batch.seq)).where(Batch.status == "anchored"))
            return int(records), int(last or 0)
    finally:
        engine.dispose()


def _sqlite_snapshot(url: str, dest: Path) -> str:
    source = make_url(url).database
    if not source:
        raise Invalid("backup_unsupported", "an in-memory database has no backup")
    tmp, final = dest / "jianzheng.db.tmp", dest / "jianzheng.db"
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # a consistent snapshot, while the service keeps writing
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(tmp, final)
    return final.name


def _pg_dump(url: str, dest: Path) -> str:
    if shutil.which("pg_dump") is None:
        raise Unavailable(
            "pg_dump_missing", "pg_dump is needed to back up PostgreSQL (postgresql-client)"
        )
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    tmp, final = dest / "jianzheng.pgdump.tmp", dest / "jianzheng.pgdump"
    run = subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", "--file", str(tmp), conninfo],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise Unavailable("pg_dump_failed", run.stderr.strip()[-500:] or "pg_dump failed")
    os.replace(tmp, final)
    return final.name


def _copy_blobs(
    source: Path, target: Path, result: BackupResult, say: Callable[[str], None]
) -> None:
    if not source.exists():
        return
    for path in sorted(source.glob("??/??/*")):
        name = path.name
        if not path.is_file() or len(name) != 64:
            continue
        result.blobs_total += 1
        out = target / name[:2] / name[2:4] / name
        if out.is_file() and out.stat().st_size == path.stat().st_size:
            continue  # content-addressed and immutable: already backed up
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(name + ".tmp")
        digest = hashlib.sha256()
        with path.open("rb") as src, tmp.open("wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != name:
            tmp.unlink()
            result.corrupt_blobs.append(name)
            say(f"NOT COPIED: {name} no longer hashes to its name")
            continue
        os.replace(tmp, out)
        result.blobs_copied += 1
        result.bytes_copied += out.stat().st_size
        if result.blobs_copied % 1000 == 0:
            say(f"files: {result.blobs_copied} copied of {result.blobs_total} seen")
    say(f"files: {result.blobs_copied} copied, {result.blobs_total} in all")
