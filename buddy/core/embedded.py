"""The embedded default's stand-in for `celery beat`: without Redis there is no beat process,
so the web process runs the same schedule (CELERY_BEAT_SCHEDULE) in a daemon thread."""

from __future__ import annotations

import logging
import threading
import time

from django import db
from django.conf import settings

from buddy.core.tasks import app

logger = logging.getLogger(__name__)
_started = threading.Event()


def _run_forever() -> None:
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


def start_scheduler() -> None:
    """Start the in-process schedule once per process, if this process is to run it."""
    if not settings.BUDDY_EMBEDDED_SCHEDULER or _started.is_set():
        return
    _started.set()
    threading.Thread(target=_run_forever, name="buddy-embedded-beat", daemon=True).start()
    logger.info("embedded scheduler started (no REDIS_URL: periodic tasks run in-process)")
