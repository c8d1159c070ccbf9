"""service.sandbox: untrusted work runs in a child with capped memory and time."""

from __future__ import annotations

import threading
import time

import pytest

from service.sandbox import Sandbox, SandboxBusy, SandboxFailed
from tests import sandbox_work


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(memory_bytes=512 * 1024 * 1024, timeout_s=3.0, concurrency=2, preload=())


def test_a_result_comes_back(sandbox: Sandbox) -> None:
    assert sandbox.run(sandbox_work.add, 2, 3) == 5


def test_the_work_s_own_exception_is_raised_in_the_caller(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="broken file"):
        sandbox.run(sandbox_work.fail, "broken file")


def test_memory_beyond_the_cap_fails_the_child_not_the_caller(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxFailed) as failed:
        sandbox.run(sandbox_work.hog_memory, 2048)
    assert failed.value.reason == "memory"
    assert sandbox.run(sandbox_work.add, 1, 1) == 2  # the caller is fine


def test_a_child_past_its_deadline_is_killed(sandbox: Sandbox) -> None:
    start = time.monotonic()
    with pytest.raises(SandboxFailed) as failed:
        sandbox.run(sandbox_work.sleep_for, 60)
    assert failed.value.reason == "time"
    assert time.monotonic() - start < 10


def test_cpu_time_is_capped_too(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxFailed) as failed:
        sandbox.run(sandbox_work.spin_for, 30)
    assert failed.value.reason in ("time", "crashed")


def test_calls_beyond_the_concurrency_are_refused_at_once(sandbox: Sandbox) -> None:
    started = threading.Barrier(3)
    results: list[object] = []

    def slow() -> None:
        started.wait()
        results.append(sandbox.run(sandbox_work.sleep_for, 1.5))

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.5)
    with pytest.raises(SandboxBusy):
        sandbox.run(sandbox_work.add, 1, 2)
    for t in threads:
        t.join(10)
    assert results == [1.5, 1.5]
