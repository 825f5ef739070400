"""Last use of keys: recorded by lookups in the process, handed to Redis in batches by a thread,
and written to the database by beat (`keys.flush_last_used`; in the embedded default, by its
scheduler, from its in-process Redis)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import connection

from buddy.core.background import EveryFewSeconds
from buddy.core.redis import client
from keys import services
from keys.lookup.cache import PREFIX

logger = logging.getLogger(__name__)

USED_SET = f"{PREFIX}used"


class _UsageRecorder:
    """Last use of keys, gathered in the process and flushed every few seconds by a thread:
    to the Redis sorted set `used` (beat writes it to the database), or while Redis cannot answer
    straight to the database (at most one write per key per flush interval)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, float] = {}
        self.thread = EveryFewSeconds(
            "buddy-last-used",
            self.flush,
            lambda: settings.BUDDY_LOOKUP_LAST_USED_LOCAL_FLUSH_SECONDS,
        )

    def record(self, public_id: str) -> None:
        now = time.time()
        with self.lock:
            self.pending[public_id] = now
        self.thread.ensure_running()

    def take(self) -> dict[str, float]:
        with self.lock:
            pending, self.pending = self.pending, {}
        return pending

    def flush(self) -> int:
        """Hand what was gathered on (to Redis, or to the database while Redis cannot answer);
        returns how many."""
        pending = self.take()
        if not pending:
            return 0
        try:
            client().zadd(USED_SET, pending, gt=True)
            return len(pending)
        except redis.RedisError:
            logger.warning("lookup cache unreachable; writing last use to the database")
        try:
            return services.key_touch_last_used(used=_as_datetimes(pending))
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()


def _as_datetimes(used: dict[str, float]) -> dict[str, datetime]:
    return {pid: datetime.fromtimestamp(ts, tz=UTC) for pid, ts in used.items()}


recorder = _UsageRecorder()


def used_take(limit: int = 10_000) -> dict[str, datetime]:
    """Take up to `limit` recorded last uses out of Redis (each is taken exactly once)."""
    with client().pipeline(transaction=True) as pipe:
        pipe.zrange(USED_SET, 0, limit - 1, withscores=True)
        pipe.zremrangebyrank(USED_SET, 0, limit - 1)
        taken, _removed = pipe.execute()
    return _as_datetimes({pid.decode(): ts for pid, ts in taken})


def used_restore(used: dict[str, datetime]) -> None:
    """Put taken last uses back (the database write failed); newer ones already there win."""
    if used:
        client().zadd(USED_SET, {pid: at.timestamp() for pid, at in used.items()}, gt=True)
