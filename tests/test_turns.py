"""service.api.turns.TurnMemo on real asyncio loops (pure logic, no service)."""

from __future__ import annotations

import asyncio
import threading

from service.api.turns import TurnMemo


def test_a_value_lasts_for_the_handlers_already_scheduled_only() -> None:
    memo = TurnMemo()
    seen: dict[str, bytes | None] = {}

    async def reader(name: str) -> None:
        seen[name] = memo.get("k")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = [loop.create_task(reader(f"before{i}")) for i in range(3)]  # waiting already
        memo.put("k", b"answer")
        assert memo.get("k") == b"answer"
        after = loop.create_task(reader("after"))  # scheduled after the put
        await asyncio.gather(*before, after)
        assert memo.get("k") is None  # a later turn

    asyncio.run(main())
    assert seen == {"before0": b"answer", "before1": b"answer", "before2": b"answer",
                    "after": None}
    assert memo.shared == 4  # three waiting readers and the check in main


def test_each_loop_has_its_own_turn() -> None:
    memo = TurnMemo()
    put_done = threading.Event()
    other_done = threading.Event()
    seen: list[bytes | None] = []

    async def owner() -> None:
        memo.put("k", b"mine")
        put_done.set()
        # block this turn (no await) until the other loop has looked
        assert other_done.wait(10)
        assert memo.get("k") == b"mine"

    async def other() -> None:
        assert put_done.wait(10)
        seen.append(memo.get("k"))
        other_done.set()

    thread = threading.Thread(target=lambda: asyncio.run(owner()))
    thread.start()
    asyncio.run(other())
    thread.join(10)
    assert seen == [None]
