"""A daemon thread that runs one housekeeping pass every so often until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls `step` now and then every `interval_s` seconds in a daemon thread.

    A failing pass (e.g. the database briefly away) is logged and the loop goes on;
    `stop` wakes the thread at once and waits for the pass in progress to end.
    """

    def __init__(self, name: str, step: Callable[[], object], interval_s: float) -> None:
        self._step = step
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                log.exception("%s: pass failed", self._thread.name)
            self._stop.wait(self._interval_s)
