"""Celery tasks of webhooks: a name and a body each (the retry policy is `BuddyTask`'s)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from buddy.core.tasks import BuddyTask, app
from buddy.webhooks import services

logger = logging.getLogger(__name__)


@shared_task(base=BuddyTask, name=services.DELIVER_TASK)
def deliver(endpoint_id: str) -> None:
    """Deliver what is due to one endpoint; a retry due soon is scheduled here (a later one, or
    one whose message is lost, is beat's `webhooks.redrive`)."""
    due_in = services.webhook_endpoint_deliver(endpoint_id=endpoint_id)
    # Run in-process (the embedded default), a countdown would not wait: the schedule's re-drive
    # thread sends what is due instead.
    if app.conf.task_always_eager:
        return
    if due_in is not None and due_in <= settings.BUDDY_WEBHOOK_REDRIVE_SECONDS:
        app.tasks[services.DELIVER_TASK].apply_async(args=(endpoint_id,), countdown=due_in)


@shared_task(base=BuddyTask, name="webhooks.prune")
def prune() -> int:
    """Forget events (and their deliveries) past the retention that owe nothing more."""
    pruned = services.webhook_events_prune()
    if pruned:
        logger.info("pruned %d webhook events", pruned)
    return pruned


@shared_task(base=BuddyTask, name="webhooks.redrive")
def redrive() -> int:
    """Send the delivery task for every endpoint with something due."""
    sent = services.webhook_redrive()
    if sent:
        logger.info("webhook deliveries re-driven for %d endpoints", sent)
    return sent
