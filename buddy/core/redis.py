"""The one Redis client of buddy's own data (lookup cache, counters, last use, task failures) and
the one breaker class in front of whatever buddy calls that may be down (Redis, the broker).

There is always a client: the server at `REDIS_URL`, or in the embedded default the in-process
one (`buddy.core.embedded`), so callers have one code path and handle only Redis errors. The
Celery broker is the same server, reached through kombu; this client is for everything else.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from functools import cache

import redis
from django.conf import settings

from buddy.core import embedded
from buddy.core.conf import per_settings

logger = logging.getLogger(__name__)


@cache
def client() -> redis.Redis:
    """buddy's Redis, made once per process (tests that change the settings call `cache_clear`)."""
    if settings.EMBEDDED:
        return embedded.in_process_redis()
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
    )


def cache_client() -> redis.Redis:
    """The lookup cache's Redis (`BUDDY_CACHE_REDIS_URL`, else the one of `client`): a server
    that may run without persistence, since everything in it can be rebuilt from PostgreSQL
    (`keys.lookup`'s docstring says why it had better not be restored)."""
    url = _separate_cache_url()
    return client() if url is None else _cache_client_at(url)


@per_settings
def _separate_cache_url() -> str | None:
    """`cache_url()` when it is not the server of `client()`, else None (read once: every lookup
    asks)."""
    url = cache_url()
    return None if settings.EMBEDDED or url == settings.REDIS_URL else url


@per_settings
def cache_url() -> str:
    """The URL of the lookup cache's Redis: `BUDDY_CACHE_REDIS_URL`, else `REDIS_URL`."""
    return settings.BUDDY_CACHE_REDIS_URL or settings.REDIS_URL


@cache
def _cache_client_at(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
    )


class _Pid:
    """This process's id, read again in a forked child only (not a system call per read: the
    hot paths ask on every request)."""

    def __init__(self) -> None:
        self.value = os.getpid()

    def forked(self) -> None:
        self.value = os.getpid()


_pid = _Pid()
os.register_at_fork(after_in_child=_pid.forked)


def getpid() -> int:
    """This process's id (a connection or thread made before a fork is not the child's)."""
    return _pid.value


class Breaker:
    """After a failure, skip the call for `seconds` instead of making every caller wait for a
    timeout; the caller falls back (PostgreSQL for lookups, the reconciler for messages)."""

    def __init__(
        self, name: str, seconds: float, connect: Callable[[], redis.Redis] = client
    ) -> None:
        self.name = name
        self.seconds = seconds
        self.connect = connect
        self.down_until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self.down_until

    def available(self) -> redis.Redis | None:
        """The client, or None while the breaker is open."""
        return None if self.is_open else self.connect()

    def trip(self, exc: Exception) -> None:
        if not self.is_open:
            logger.warning("%s unreachable (%s); falling back", self.name, type(exc).__name__)
        self.down_until = time.monotonic() + self.seconds

    def reset(self) -> None:
        self.down_until = 0.0
