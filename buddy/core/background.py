"""A daemon thread per process that runs a step every few seconds: what the recorders of the hot
path (last use of keys, usage) use to hand what they gathered in the process on to Redis."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from buddy.core.redis import getpid

logger = logging.getLogger(__name__)


class EveryFewSeconds:
    """`step()` every `interval()` seconds in a daemon thread named `name`, started by the first
    `ensure_running()` of each process (a forked worker starts its own: the parent's thread is not
    in the child). A step that raises is logged and the next one runs on time."""

    def __init__(
        self, name: str, step: Callable[[], object], interval: Callable[[], float]
    ) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self.lock = threading.Lock()
        self.pid = 0

    def ensure_running(self) -> None:
        if self.pid == getpid():  # the common case: one comparison, no lock
            return
        with self.lock:
            if self.pid == getpid():
                return
            self.pid = getpid()
        threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval())
            try:
                self.step()
            except Exception:
                logger.exception("%s: a periodic step failed", self.name)
