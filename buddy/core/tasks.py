"""buddy's Celery app, the one base class of its tasks, and the one way to send a task.

- `BuddyTask` holds the retry policy every task shares (late acks, transient database errors
  retried with exponential backoff under the broker's visibility timeout, no results); a task
  declares a name and a body: `@shared_task(base=BuddyTask, name="keys.create_default")`.
- `enqueue_on_commit` sends a task by name once the current transaction commits: apps send each
  other's tasks by name, never by importing them.
- A task that fails for good is counted (`buddy_task_failures` in `/metrics`) in Redis, where a
  scrape of any web process reads it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import task_failure
from django.db import InterfaceError, OperationalError, transaction

from buddy.core.redis import Breaker, client

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buddy.settings")

app = Celery("buddy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
RETRY_BACKOFF_MAX = 120


class BuddyTask(Task):
    """The retry policy of every buddy task: acknowledged after it ran (a worker that dies
    mid-task costs a re-run, never the work), transient database errors retried with jittered
    exponential backoff capped below the broker's visibility timeout, no result stored. Bodies
    are idempotent and take ids."""

    acks_late = True
    ignore_result = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = True
    retry_backoff_max = RETRY_BACKOFF_MAX
    retry_jitter = True
    max_retries = 10


# After a failed publish, skip publishing for this long: each attempt against an unreachable broker
# waits for its connect timeout, and the reconciler finishes whatever is skipped.
broker_breaker = Breaker("broker", seconds=10.0)


def enqueue_on_commit(task_name: str, *args: object) -> None:
    """Send a task once the current transaction commits; a broker outage is logged, not raised.

    The caller's change is already committed by then, and the reconciler finishes what a lost
    message leaves undone, so failing the request would only report an error for work that
    did happen. While the broker is known to be down, sending is skipped at once instead of
    making every request wait for a connect timeout.
    """

    def send() -> None:
        if broker_breaker.is_open:
            logger.warning("broker down: not enqueueing %s%r; the reconciler will", task_name, args)
            return
        try:
            app.tasks[task_name].apply_async(args=args, retry=False)
        except Exception as exc:
            broker_breaker.trip(exc)
            logger.warning(
                "could not enqueue %s%r (%s: %s); the reconciler will finish it",
                task_name,
                args,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(send)


# --- failures ------------------------------------------------------------------------------------

TASK_FAILURES_KEY = "buddy:metrics:task_failures"


def record_task_failure(task_name: str) -> None:
    try:
        client().hincrby(TASK_FAILURES_KEY, task_name, 1)
    except redis.RedisError:
        logger.warning("could not count a failure of task %s: Redis unreachable", task_name)


def _on_task_failure(sender: Any = None, **_: Any) -> None:
    record_task_failure(getattr(sender, "name", None) or "unknown")


task_failure.connect(_on_task_failure, weak=False, dispatch_uid="buddy.task_failure")
