"""Celery tasks of keys: a name and a body each (the retry policy is `BuddyTask`'s); they take
ids, re-read state and call one service, so a task run twice changes nothing more."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from buddy.core.tasks import BuddyTask
from deployments.selectors import deployment_list_ended
from keys import services
from keys.lookup import guards, usage

logger = logging.getLogger(__name__)


@shared_task(base=BuddyTask, name="keys.create_default")
def create_default(deployment_id: str) -> None:
    """A ready deployment's default key (exactly one, however often this runs)."""
    services.key_create_default(deployment_id=deployment_id)


@shared_task(base=BuddyTask, name="keys.revoke_for_deployments")
def revoke_for_deployments(deployment_ids: list[str]) -> None:
    """Every active key of those of these deployments that have ended, revoked with the reason of
    each one's end (one deployment is a list of one)."""
    ended = deployment_list_ended(deployment_ids=deployment_ids)
    revoked = services.key_revoke_all_for_deployments(
        deployment_ids=ended,
        actor="system:revocation",
        batch_size=settings.BUDDY_REVOKE_BATCH_SIZE,
    )
    if revoked:
        logger.info("revoked %d keys of %d ended deployments", revoked, len(ended))


@shared_task(base=BuddyTask, name="keys.revoke_for_deployment")
def revoke_for_deployment(deployment_id: str) -> None:
    """Deprecated: messages sent before ends became plural. Kept registered for one release so
    that messages in flight are consumed; remove in the next."""
    revoke_for_deployments([deployment_id])


@shared_task(base=BuddyTask, name="keys.reconcile")
def reconcile() -> dict[str, int]:
    """Finish what a lost message left undone; the database says what is owed."""
    done = services.key_reconcile(batch_size=settings.BUDDY_RECONCILE_BATCH_SIZE)
    if any(done.values()):
        logger.info("reconciled: %s", done)
    return done


@shared_task(base=BuddyTask, name="keys.flush_last_used")
def flush_last_used() -> int:
    """Write the last use of keys that lookups recorded in Redis to the database (batched)."""
    written = 0
    for _batch in range(20):
        used = usage.used_take()
        if not used:
            break
        try:
            written += services.key_touch_last_used(used=used)
        except Exception:
            usage.used_restore(used)
            raise
    return written


@shared_task(base=BuddyTask, name="keys.write_pending_guards")
def write_pending_guards() -> int:
    """Write to the lookup cache the guards that changes could not write and owed in PostgreSQL
    (nothing, while Redis answers): a revoke survives the death of the process that made it."""
    return guards.pending_guards_write()
