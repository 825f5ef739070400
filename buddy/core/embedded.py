"""The embedded default (`make run`), and everything in which it differs from production.

Without `REDIS_URL`, `buddy.settings` sets `EMBEDDED = True`, once: the Redis, broker and
scheduler differences below follow from that one value, and nothing else in buddy asks which mode
it runs in (the database and the provisioner are the defaults of their own settings). Everything
not listed here is the production code, run as it is: the lookup cache and its guards, the failure
counters, last use (recorder -> the Redis sorted set -> `keys.flush_last_used`, which the scheduler
runs), usage (recorder -> Redis' hourly hashes -> `usage.flush`, run by the scheduler), task
failure counts, `/readyz` (the in-process Redis answers its ping).

What differs (production in brackets), and the one setting or function that selects it:

- **buddy's Redis**: `in_process_redis()`, a fakeredis server with Lua held in this process and
  shared by all its threads [the server at `REDIS_URL`]. `buddy.core.redis.client()`.
- **Celery broker**: `memory://`; tasks run eagerly in the web process right after the commit
  that sends them [Redis at `REDIS_URL`, worker processes]. `CELERY_BROKER_URL`,
  `CELERY_TASK_ALWAYS_EAGER`.
- **Periodic work**: `start_scheduler()`, the same `CELERY_BEAT_SCHEDULE` in a thread of the web
  process [one `celery beat` process]. `BUDDY_EMBEDDED_SCHEDULER`.
- **Database**: SQLite `db.sqlite3`, WAL and immediate transactions [PostgreSQL].
  `DATABASES` (no `DATABASE_URL`).
- **Provisioner**: `local`, a simulated boot in a timer thread and the built-in model server
  [`http`, the orchestrator]. `BUDDY_PROVISIONER` (`make run` sets `local`).
- **Django's cache** (the sign-in throttle's counts): local memory [Redis]. `CACHES`.

The embedded default is **one process**: its Redis lives in that process's memory, so a revoke
in one process could not reach the lookup cache of another. Run it under one server process
(`make run`: uvicorn, one worker); anything with several processes needs `REDIS_URL`.
"""

from __future__ import annotations

import logging
import threading
import time

import fakeredis
import redis
from celery import Celery
from django import db
from django.conf import settings

logger = logging.getLogger(__name__)
_started = threading.Event()


def in_process_redis() -> redis.Redis:
    """A client of a new Redis server held in this process's memory (fakeredis, with Lua for the
    lookup cache's scripts). `buddy.core.redis.client()` makes it once, so every thread of the
    process shares the one server."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def _run_forever(app: Celery) -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE
    next_run = {name: time.monotonic() for name in schedule}
    while True:
        now = time.monotonic()
        for name, entry in schedule.items():
            if now >= next_run[name]:
                next_run[name] = now + float(entry["schedule"])
                db.close_old_connections()
                try:
                    app.tasks[entry["task"]].apply()
                except Exception:
                    logger.exception("embedded scheduler: %s failed", name)
                finally:
                    db.close_old_connections()
        time.sleep(max(0.05, min(next_run.values()) - time.monotonic()))


def start_scheduler(app: Celery) -> None:
    """The stand-in for `celery beat`: run `app`'s schedule (CELERY_BEAT_SCHEDULE) in a daemon
    thread, once per process, if this process is to run it (`BUDDY_EMBEDDED_SCHEDULER`)."""
    if not settings.BUDDY_EMBEDDED_SCHEDULER or _started.is_set():
        return
    _started.set()
    threading.Thread(
        target=_run_forever, args=(app,), name="buddy-embedded-beat", daemon=True
    ).start()
    logger.info("embedded scheduler started (no REDIS_URL: periodic tasks run in-process)")
