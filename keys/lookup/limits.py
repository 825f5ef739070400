"""Limits of the lookup: failed verifications per public id and client address (the 429
`rate_limited` counter) and the bound on argon2 verifications running at once in a process.

A key the cache recognises by its HMAC is never limited (it needs no verification). A cache miss
is limited per (public id, client address): the public id is no secret (it is in the masked key
the console shows), so a count per public id alone would let anyone who saw it lock its owner out
with ten wrong keys a minute. Lookups that give no valid address share one count per public id."""

from __future__ import annotations

import ipaddress
import threading
import time

import redis
from django.conf import settings

from keys.lookup.cache import PREFIX, breaker


def client_address(client_ip: object) -> str:
    """The client's address in one canonical spelling, or "" unless it is a valid IP address."""
    if not isinstance(client_ip, str) or not client_ip or len(client_ip) > 64:
        return ""
    try:
        return ipaddress.ip_address(client_ip).compressed
    except ValueError:
        return ""


def failure_counter(public_id: str, client_ip: str = "") -> str:
    return f"{PREFIX}fail:{public_id}:{client_ip}"


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


def failures(public_id: str, client_ip: str = "") -> tuple[int, int]:
    """(failed verifications in the current window, seconds until the window ends) of this public
    id from this client address (`client_address`)."""
    counter = failure_counter(public_id, client_ip)
    r = breaker.available()
    if r is not None:
        try:
            with r.pipeline(transaction=False) as pipe:
                pipe.get(counter)
                pipe.ttl(counter)
                count, ttl = pipe.execute()
            return int(count or 0), max(int(ttl), 1) if count else 0
        except redis.RedisError as exc:
            breaker.trip(exc)
    return local_counters.get(counter)


def failure_record(public_id: str, client_ip: str = "") -> None:
    counter = failure_counter(public_id, client_ip)
    window = settings.BUDDY_LOOKUP_FAILURE_WINDOW_SECONDS
    r = breaker.available()
    if r is not None:
        try:
            # MULTI/EXEC: a counter never exists without its expiry (no lockout for good).
            with r.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, window, nx=True)
                pipe.execute()
            return
        except redis.RedisError as exc:
            breaker.trip(exc)
    local_counters.add(counter, window)


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
