"""The one Redis client of buddy's own data (lookup cache, counters) and the breaker in front of it.

The Celery broker is the same server, reached through kombu; this client is for everything else.
"""

from __future__ import annotations

import logging
import os
import time
from functools import cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


@cache
def client() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
    )


def getpid() -> int:
    """This process's id (a connection or thread made before a fork is not the child's)."""
    return os.getpid()


class Breaker:
    """After a failure, skip the call for `seconds` instead of making every caller wait for a
    timeout; the caller falls back (PostgreSQL for lookups, the reconciler for messages)."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self.down_until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self.down_until

    def available(self) -> redis.Redis | None:
        """The client, or None while the breaker is open (or there is no Redis)."""
        return None if self.is_open else client()

    def trip(self, exc: Exception) -> None:
        if not self.is_open:
            logger.warning("%s unreachable (%s); falling back", self.name, type(exc).__name__)
        self.down_until = time.monotonic() + self.seconds

    def reset(self) -> None:
        self.down_until = 0.0
