"""Limits of the lookup: failed verifications per public id (the 429 `rate_limited` counter) and
the bound on argon2 verifications running at once in a process."""

from __future__ import annotations

import threading
import time

import redis
from django.conf import settings

from keys.lookup.cache import PREFIX, breaker


def failure_counter(public_id: str) -> str:
    return f"{PREFIX}fail:{public_id}"


class _LocalCounters:
    """Failure counters of one process, for while Redis cannot answer (the breaker is open or a
    call failed): the limit then holds per process instead of not at all."""

    def __init__(self, max_size: int = 100_000) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, tuple[int, float]] = {}
        self.max_size = max_size

    def get(self, public_id: str) -> tuple[int, int]:
        with self.lock:
            count, until = self.counts.get(public_id, (0, 0.0))
        left = until - time.monotonic()
        return (count, int(left) + 1) if left > 0 else (0, 0)

    def add(self, public_id: str, window: int) -> None:
        now = time.monotonic()
        with self.lock:
            count, until = self.counts.get(public_id, (0, 0.0))
            if until <= now:
                count, until = 0, now + window
            if len(self.counts) >= self.max_size:
                self.counts = {k: v for k, v in self.counts.items() if v[1] > now}
            self.counts[public_id] = (count + 1, until)


local_counters = _LocalCounters()


def failures(public_id: str) -> tuple[int, int]:
    """(failed verifications in the current window, seconds until the window ends)."""
    r = breaker.available()
    if r is not None:
        try:
            with r.pipeline(transaction=False) as pipe:
                pipe.get(failure_counter(public_id))
                pipe.ttl(failure_counter(public_id))
                count, ttl = pipe.execute()
            return int(count or 0), max(int(ttl), 1) if count else 0
        except redis.RedisError as exc:
            breaker.trip(exc)
    return local_counters.get(public_id)


def failure_record(public_id: str) -> None:
    window = settings.BUDDY_LOOKUP_FAILURE_WINDOW_SECONDS
    r = breaker.available()
    if r is not None:
        try:
            # MULTI/EXEC: a counter never exists without its expiry (no lockout for good).
            with r.pipeline(transaction=True) as pipe:
                pipe.incr(failure_counter(public_id))
                pipe.expire(failure_counter(public_id), window, nx=True)
                pipe.execute()
            return
        except redis.RedisError as exc:
            breaker.trip(exc)
    local_counters.add(public_id, window)


class _VerifySlots:
    """Bounds the argon2 verifications running at once in this process (each one costs
    `BUDDY_ARGON2_MEMORY_COST` KiB and a core for milliseconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.size = 0
        self.semaphore = threading.BoundedSemaphore(1)

    def get(self) -> threading.BoundedSemaphore:
        size = settings.BUDDY_LOOKUP_MAX_CONCURRENT_VERIFICATIONS
        if size != self.size:
            with self.lock:
                if size != self.size:
                    self.semaphore, self.size = threading.BoundedSemaphore(size), size
        return self.semaphore


verify_slots = _VerifySlots()
