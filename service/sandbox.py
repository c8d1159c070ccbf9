"""Work on untrusted files in a child process whose memory and time are capped.

A hostile file sent to the public (a PDF with a huge page or a flate bomb, a pixel bomb)
must cost one bounded child, never the server: `Sandbox.run(fn, *args)` forks a child
from a fork server (started once, with the PDF and image libraries already imported, so a
child starts in milliseconds), caps its address space (`RLIMIT_AS`) and CPU time, runs
`fn(*args)` there and hands back the result. A child that runs out of memory, out of
time or dies is reported as `SandboxFailed` (the caller answers "unreadable"); a child
still running at the deadline is killed. At most `concurrency` children run at once per
process; a call beyond that is refused at once (`SandboxBusy`: the API answers 503 with
Retry-After) instead of queueing work nobody bounds.

`fn` must be a module-level function and its arguments and result picklable.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.context import ForkServerContext
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Modules the fork server imports once, so that children need not.
PRELOAD = ("verifier.pdf", "pypdfium2", "zxingcpp", "PIL.Image", "pyhanko.pdf_utils.reader")


class SandboxFailed(Exception):
    """The child ran out of memory or time, or died. `reason`: memory | time | crashed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SandboxBusy(Exception):
    """Every slot is taken; try again shortly."""


def _limit(memory_bytes: int, cpu_s: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))


def _noop() -> None:
    return None


def _child(
    conn: multiprocessing.connection.Connection,
    memory_bytes: int,
    cpu_s: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    try:
        _limit(memory_bytes, cpu_s)
        result = fn(*args)
    except MemoryError:
        conn.send(("memory", "the work needed more memory than allowed"))
    except BaseException as exc:  # an exception of the work itself goes back to the caller
        try:
            conn.send(("raise", exc))
        except Exception:
            conn.send(("crashed", "".join(traceback.format_exception_only(exc)).strip()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


class Sandbox:
    def __init__(
        self,
        *,
        memory_bytes: int = 1024 * 1024 * 1024,
        timeout_s: float = 10.0,
        concurrency: int = 2,
        preload: Sequence[str] = PRELOAD,
    ) -> None:
        self.memory_bytes = memory_bytes
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency)
        self._preload = list(preload)
        self._ctx: ForkServerContext | None = None
        self._ctx_lock = threading.Lock()
        #: Children that failed (memory, time, crash), for /metrics and tests.
        self.failures = 0

    def _context(self) -> ForkServerContext:
        with self._ctx_lock:
            if self._ctx is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(self._preload)
                self._ctx = ctx
            return self._ctx

    def warm(self) -> None:
        """Start the fork server and run one child, so that the first real call does not
        pay for the server's start and its imports."""
        try:
            self.run(_noop)
        except (SandboxBusy, SandboxFailed) as exc:
            log.warning("sandbox warm-up failed: %s", exc)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a capped child. Re-raises the work's own exceptions."""
        if not self._slots.acquire(blocking=False):
            raise SandboxBusy("every sandbox slot is busy")
        try:
            return self._run(fn, args)
        finally:
            self._slots.release()

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        deadline = time.monotonic() + self.timeout_s  # the child's start counts too
        ctx = self._context()
        receiver, sender = ctx.Pipe(duplex=False)
        cpu_s = max(1, int(self.timeout_s) + 1)
        proc = ctx.Process(
            target=_child,
            args=(sender, self.memory_bytes, cpu_s, fn, args),
            name="jz-sandbox",
            daemon=True,
        )
        proc.start()
        sender.close()
        try:
            if not receiver.poll(max(0.0, deadline - time.monotonic())):
                self.failures += 1
                raise SandboxFailed("time", f"no answer within {self.timeout_s:g} s")
            try:
                status, value = receiver.recv()
            except (EOFError, OSError):
                self.failures += 1
                raise SandboxFailed("crashed", "the child died without an answer") from None
        finally:
            receiver.close()
            if proc.is_alive():
                proc.kill()
            # a killed child with a large address space takes a moment to be torn down;
            # the caller need not wait for it (multiprocessing reaps it on a later start)
            proc.join(0.2)
        if status == "ok":
            result: T = value
            return result
        if status == "raise":
            raise value
        self.failures += 1
        raise SandboxFailed(str(status), str(value))
