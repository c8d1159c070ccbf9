"""Answers shared by the requests of one event-loop turn.

A cached public answer is only given after checking that nothing it was checked against
changed (ReportViews.cached_view: the database's change stamp and the blob files' stat).
Under load many requests for the same report are waiting in the same turn of the event
loop; one check answers all of them, and no less exactly than a check of their own:

- the first request of a turn to make the check stores its answer here and schedules the
  answer's removal with `loop.call_soon`;
- the loop runs callbacks in the order they were scheduled (asyncio and uvloop both), so
  every request handler that runs before the removal was scheduled before it, and its
  request had arrived before the check was made;
- a request that arrives after the check is scheduled after the removal, finds nothing
  here and makes its own check.

So every answer reflects the database and the files as they were at an instant after its
request arrived, which is what a check of its own would give. Only handlers running on
the event loop may use this; each loop has its own answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class TurnMemo:
    """Values kept until the callbacks already scheduled on the running loop have run."""

    def __init__(self) -> None:
        #: id(loop) -> (the loop, the answers of its current turn)
        self._turns: dict[int, tuple[asyncio.AbstractEventLoop, dict[Hashable, bytes]]] = {}
        #: Answers given from the memo (tests read it).
        self.shared = 0

    def get(self, key: Hashable) -> bytes | None:
        loop = asyncio.get_running_loop()
        turn = self._turns.get(id(loop))
        if turn is None or turn[0] is not loop:
            return None
        value = turn[1].get(key)
        if value is not None:
            self.shared += 1
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        turn = self._turns.get(id(loop))
        if turn is None or turn[0] is not loop:
            turn = (loop, {})
            self._turns[id(loop)] = turn
            loop.call_soon(self._end_turn, loop)
        turn[1][key] = value

    def _end_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        # the entry `put` made with this callback: none other is made for the loop before
        self._turns.pop(id(loop), None)
