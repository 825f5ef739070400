"""Celery tasks of usage (run by beat; in the embedded default by its scheduler)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from buddy.core.tasks import BuddyTask
from buddy.usage import services

logger = logging.getLogger(__name__)


@shared_task(base=BuddyTask, name="usage.flush")
def flush() -> dict[str, int]:
    """Move the usage counted in Redis into the hourly rollup (exactly once per count)."""
    return services.usage_flush()


@shared_task(base=BuddyTask, name="usage.fold")
def fold() -> dict[str, int]:
    """Fold hourly rows past `BUDDY_USAGE_HOURLY_RETENTION_DAYS` into daily rows, and forget
    batch ids older than 24 h."""
    now = timezone.now()
    before = services.hourly_cutoff(
        now=now, retention_days=settings.BUDDY_USAGE_HOURLY_RETENTION_DAYS
    )
    done = {
        "folded": services.usage_fold_hourly(before=before),
        "forgotten_batches": services.usage_forget_batches(now=now),
    }
    if done["folded"]:
        logger.info("usage: folded %d hourly rows into days", done["folded"])
    return done
