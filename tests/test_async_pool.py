"""AsyncPgPool hands connections over in FIFO order (pure pool logic; connections faked)."""

from __future__ import annotations

import asyncio
from typing import Any

from service.storage.db import AsyncPgPool


class FakeConn:
    closed = False

    def __init__(self, n: int) -> None:
        self.n = n

    async def close(self) -> None:
        self.closed = True


def _pool(size: int) -> AsyncPgPool:
    pool = AsyncPgPool("postgresql://unused", size)
    opened = iter(range(1000))

    async def fake_open() -> Any:
        return FakeConn(next(opened))

    pool._open = fake_open  # type: ignore[method-assign]
    return pool


def test_a_released_connection_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    async def scenario() -> list[str]:
        pool = _pool(1)
        order: list[str] = []
        held = await pool._acquire()

        async def user(name: str) -> None:
            conn = await pool._acquire()
            order.append(name)
            await asyncio.sleep(0)
            await pool._release(conn, broken=False)

        first = asyncio.create_task(user("waiter-1"))
        second = asyncio.create_task(user("waiter-2"))
        await asyncio.sleep(0)  # both are queued now
        await pool._release(held, broken=False)
        # A newcomer asking at once, before the woken waiter has run, must queue behind.
        await user("newcomer")
        await asyncio.gather(first, second)
        return order

    assert asyncio.run(scenario()) == ["waiter-1", "waiter-2", "newcomer"]


def test_a_broken_connection_frees_its_slot_for_a_waiter() -> None:
    async def scenario() -> int:
        pool = _pool(1)
        held = await pool._acquire()
        waiting = asyncio.create_task(pool._acquire())
        await asyncio.sleep(0)
        await pool._release(held, broken=True)
        conn = await asyncio.wait_for(waiting, 1)
        assert conn is not held and held.closed
        return pool._opened

    assert asyncio.run(scenario()) == 1


def test_a_cancelled_waiter_passes_its_connection_on() -> None:
    async def scenario() -> FakeConn:
        pool = _pool(1)
        held = await pool._acquire()
        doomed = asyncio.create_task(pool._acquire())
        survivor = asyncio.create_task(pool._acquire())
        await asyncio.sleep(0)
        await pool._release(held, broken=False)  # handed to `doomed` ...
        doomed.cancel()  # ... which is cancelled before it runs
        got: FakeConn = await asyncio.wait_for(survivor, 1)
        return got

    assert asyncio.run(scenario()).n == 0
