"""Content-addressed blob store: `blobs/ab/cd/<sha256>`, written atomically and durably.

A blob is written to `tmp/`, fsynced, renamed into place, and the directory that now
holds it is fsynced too (a rename is durable only once its directory is), as is every
directory created on the way. Blobs no committed record names (a crash between writing
the file and committing its record) are removed by `service.domain.orphans` after a
grace period.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK = 1024 * 1024


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a created or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """`mkdir -p` that fsyncs the parent of every directory it creates."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        fsync_dir(directory.parent)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("blob name must be 64 lowercase hex")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes) -> str:
        return self.put_chunks([data])

    def put_chunks(self, chunks: Iterable[bytes]) -> str:
        """Store the concatenated chunks; returns their SHA-256 (lowercase hex)."""
        h = hashlib.sha256()
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    h.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            digest = h.hexdigest()
            self.adopt(Path(tmp), digest)
            return digest
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def adopt(self, file: Path, sha256: str) -> None:
        """Move an already-hashed file into place (atomic rename; idempotent)."""
        dest = self.path(sha256)
        make_dirs(dest.parent)
        if dest.exists():
            file.unlink(missing_ok=True)
            return
        os.replace(file, dest)
        fsync_dir(dest.parent)

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def sm3(self, sha256: str) -> str:
        """The SM3 (GB/T 32905, lowercase hex) of the stored blob `sha256` (§7.7)."""
        return sm3_file(self.path(sha256))

    def older_than(self, age_s: float) -> Iterator[tuple[str, Path]]:
        """(sha256, path) of every blob last modified more than `age_s` seconds ago."""
        cutoff = time.time() - age_s
        for first in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for path in first.glob("[0-9a-f][0-9a-f]/*"):
                try:
                    if len(path.name) == 64 and path.stat().st_mtime < cutoff:
                        yield path.name, path
                except FileNotFoundError:
                    continue

    def stale_temporaries(self, age_s: float) -> Iterator[Path]:
        """Files of writes that never finished (a crashed process), older than `age_s`."""
        cutoff = time.time() - age_s
        for path in (self.root / "tmp").glob("*"):
            try:
                if path.stat().st_mtime < cutoff:
                    yield path
            except FileNotFoundError:
                continue


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sm3_file(path: Path) -> str:
    """SM3 of a file, read in chunks (the `cryptography` package's SM3: OpenSSL's hashlib
    may lack it)."""
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SM3())
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.finalize().hex()
