"""Engine, sessions and schema migration (Alembic, never `create_all`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


#: Execution option naming how a SQLite transaction begins (`DEFERRED` for readers).
SQLITE_BEGIN = "sqlite_begin"


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """An engine with the settings each backend needs for concurrent use.

    SQLite: WAL with `synchronous=FULL` (a committed write survives a power cut, not only a
    process crash), and transactions begun by us (the driver's implicit BEGIN is off) with
    `BEGIN IMMEDIATE`, which takes the write lock up front: a deferred transaction that
    reads and then writes fails with SQLITE_BUSY at once when another writer got there
    first, whatever the busy timeout. Read-only work opts out with `reader(engine)` (WAL
    readers then run beside the writer). PostgreSQL: connections are pinged when taken
    from the pool, so a restarted server costs a reconnect, not a 500.
    """
    if is_sqlite(url):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we say when a transaction begins (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            options = conn.get_execution_options()
            if options.get("isolation_level") == "AUTOCOMMIT":
                return
            mode = "DEFERRED" if options.get(SQLITE_BEGIN) == "DEFERRED" else "IMMEDIATE"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_pre_ping=True,
    )


def reader(engine: Engine) -> Engine:
    """The engine for read-only transactions: on SQLite they begin DEFERRED (no write lock,
    so they never wait for a writer nor hold one up); the same engine elsewhere."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the schema at `url` to the newest migration."""
    command.upgrade(alembic_config(url), "head")


def libpq_conninfo(engine: Engine) -> str:
    """The engine's PostgreSQL URL in the form libpq (psycopg.connect) takes."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncPgPool:
    """A small pool of autocommit `psycopg.AsyncConnection`s bound to one event loop.

    For hot statements that need neither the ORM nor a transaction of several round
    trips (the signed report-code fast path): awaited on the event loop, they need no
    worker thread. Connections are opened on demand up to `size`; one whose statement
    failed is closed, not reused. Create it inside the loop that uses it (`loop`), and
    `close()` it at shutdown. Not thread-safe: use it from its loop only.
    """

    def __init__(self, conninfo: str, size: int) -> None:
        self._conninfo = conninfo
        self._size = max(1, size)
        self._idle: list[Any] = []
        self._opened = 0
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closed = False
        self.loop = asyncio.get_running_loop()

    def _hand_over(self, conn: Any | None) -> bool:
        """Give `conn` (or, with None, the right to open one) to the oldest live waiter.

        Direct hand-over keeps the pool FIFO: a request arriving just as a connection is
        released cannot take it ahead of requests already waiting (which would push them
        to the back of the queue and stretch the latency tail)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    async def _open(self) -> Any:
        import psycopg

        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except BaseException:
            self._opened -= 1
            if self._opened < self._size and self._hand_over(None):
                self._opened += 1  # the woken waiter opens one in our place
            raise

    async def _acquire(self) -> Any:
        if self._closed:
            raise RuntimeError("pool closed")
        if self._idle and not self._waiters:
            return self._idle.pop()
        if self._opened < self._size:
            self._opened += 1
            return await self._open()
        waiter: asyncio.Future[Any] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            conn = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # handed a connection (or a slot), then cancelled: pass it on
                handed = waiter.result()
                if handed is None:
                    self._opened -= 1
                    if self._hand_over(None):
                        self._opened += 1
                else:
                    await self._release(handed, broken=False)
            raise
        if conn is None:  # a slot, not a connection: open one
            return await self._open()
        return conn

    async def _release(self, conn: Any, broken: bool) -> None:
        if broken or self._closed or conn.closed:
            self._opened -= 1
            if not self._closed and self._hand_over(None):
                self._opened += 1
            await conn.close()
            return
        if not self._hand_over(conn):
            self._idle.append(conn)

    async def _fetch(self, sql: str, params: Mapping[str, Any], many: bool) -> Any:
        """Run one statement (autocommit) on a pooled connection; its first row or all."""
        conn = await self._acquire()
        broken = True
        try:
            cur = await conn.execute(sql, params)
            out = await (cur.fetchall() if many else cur.fetchone())
            broken = False
            return out
        finally:
            await self._release(conn, broken)

    async def fetchone(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run one statement (autocommit) and return its first row."""
        row: tuple[Any, ...] | None = await self._fetch(sql, params, many=False)
        return row

    async def fetchall(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit) and return all its rows."""
        rows: list[tuple[Any, ...]] = await self._fetch(sql, params, many=True)
        return rows

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for conn in idle:
            await conn.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("pool closed"))
