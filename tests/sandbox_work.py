"""Module-level functions the sandbox tests run in a child (picklable by reference)."""

from __future__ import annotations

import time


def add(a: int, b: int) -> int:
    return a + b


def hog_memory(mb: int) -> int:
    blocks = [bytearray(1024 * 1024) for _ in range(mb)]
    return len(blocks)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def spin_for(seconds: float) -> int:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def fail(message: str) -> None:
    raise ValueError(message)
