"""Throttles of the console API."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from buddy.core.redis import Breaker

logger = logging.getLogger(__name__)

_breaker = Breaker("redis (sign-in throttle)", seconds=5.0)


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """DRF's rate notation, `<number>/<period>` (`10/min`, `30/hour`): (limit, window seconds)."""
    number, _, period = rate.partition("/")
    return int(number), _PERIODS[period.strip()[:1]]


@dataclass(frozen=True, slots=True)
class _Counter:
    """One failure counter: its Redis key in the current window, its limit and window length."""

    key: str
    limit: int
    window: int
    window_ends_at: float


class TokenFailureThrottle(BaseThrottle):
    """Failed `POST /api/v1/auth/token` attempts, counted per username *and* per client address.

    Only failures count, so a console that signs in often is never slowed down. A username that
    reaches its limit (`BUDDY_TOKEN_FAILURE_RATE_PER_USERNAME`) is refused from every address,
    which still protects each user behind a proxy that makes every client one address
    (`BUDDY_NUM_PROXIES=0`); an address that reaches its own, higher limit
    (`BUDDY_TOKEN_FAILURE_RATE`) is refused for every username. Refused attempts answer
    `429 rate_limited` with Retry-After before any password is hashed, until the window ends.

    Counting is one atomic `INCR` (with its expiry, in one MULTI) per counter in buddy's Redis,
    shared by every process, in fixed windows numbered from the epoch. With Redis unreachable
    the throttle lets attempts through (sign-in keeps working) and says so in the log.
    """

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def _counters(self, request: Request) -> list[_Counter]:
        rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        now = time.time()
        counters = []
        username = request.data.get("username") if isinstance(request.data, dict) else None
        idents = [("addr", self.get_ident(request), rates["console_token_failures"])]
        if isinstance(username, str):
            digest = hashlib.sha256(username.encode()).hexdigest()[:32]
            idents.append(("user", digest, rates["console_token_failures_per_username"]))
        for kind, ident, rate in idents:
            if rate is None:
                continue
            limit, window = parse_rate(rate)
            index = int(now // window)
            counters.append(
                _Counter(
                    key=f"buddy:signin-failures:{kind}:{ident}:{window}:{index}",
                    limit=limit,
                    window=window,
                    window_ends_at=(index + 1) * window,
                )
            )
        return counters

    def allow_request(self, request: Request, view: Any) -> bool:
        counters = self._counters(request)
        client = _breaker.available()
        if not counters or client is None:
            return True
        try:
            counts = client.mget([c.key for c in counters])
        except redis.RedisError as exc:
            _breaker.trip(exc)
            return True
        now = time.time()
        blocked = [c for c, n in zip(counters, counts, strict=True) if int(n or 0) >= c.limit]
        if blocked:
            self.retry_after = max(c.window_ends_at for c in blocked) - now
            return False
        return True  # an attempt is counted only if it fails: see record_failure

    def record_failure(self, request: Request, view: Any) -> None:
        counters = self._counters(request)
        client = _breaker.available()
        if not counters or client is None:
            return
        try:
            with client.pipeline(transaction=True) as pipe:
                for counter in counters:
                    pipe.incr(counter.key)
                    pipe.expire(counter.key, counter.window * 2)
                pipe.execute()
        except redis.RedisError as exc:
            _breaker.trip(exc)

    def wait(self) -> float | None:
        return None if self.retry_after is None else max(1.0, self.retry_after)
