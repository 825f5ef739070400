"""Celery tasks of keys: thin, idempotent, taking ids; the services hold the rules."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from deployments.selectors import deployment_get, deployment_list_ended
from keys import services

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
_RETRY = {
    "acks_late": True,
    "ignore_result": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(name="keys.create_default", **_RETRY)
def create_default(deployment_id: str) -> None:
    """A ready deployment's default key (exactly one, however often this runs)."""
    services.key_create_default(deployment_id=deployment_id)


@shared_task(name="keys.revoke_for_deployment", **_RETRY)
def revoke_for_deployment(deployment_id: str) -> None:
    """Every active key of an ended deployment, revoked with the reason of its end."""
    deployment = deployment_get(deployment_id=deployment_id)
    if deployment is None or not deployment.is_terminal:
        return
    revoked = services.key_revoke_all_for_deployment(
        deployment_id=deployment_id,
        actor="system:revocation",
        batch_size=settings.BUDDY_REVOKE_BATCH_SIZE,
    )
    if revoked:
        logger.info("revoked %d keys of ended deployment %s", revoked, deployment_id)


@shared_task(name="keys.revoke_for_deployments", **_RETRY)
def revoke_for_deployments(deployment_ids: list[str]) -> None:
    """The expiry sweep's batch: every active key of those of these deployments that ended."""
    ended = deployment_list_ended(deployment_ids=deployment_ids)
    revoked = services.key_revoke_all_for_deployments(
        deployment_ids=ended,
        actor="system:revocation",
        batch_size=settings.BUDDY_REVOKE_BATCH_SIZE,
    )
    if revoked:
        logger.info("revoked %d keys of %d ended deployments", revoked, len(ended))


@shared_task(name="keys.reconcile", **_RETRY)
def reconcile() -> dict[str, int]:
    """Finish what a lost message left undone; the database says what is owed."""
    done = services.key_reconcile(batch_size=settings.BUDDY_RECONCILE_BATCH_SIZE)
    if any(done.values()):
        logger.info("reconciled: %s", done)
    return done


@shared_task(name="keys.flush_last_used", **_RETRY)
def flush_last_used() -> int:
    """Write the last use of keys that lookups recorded in Redis to the database (batched)."""
    from keys import lookup_cache

    written = 0
    for _batch in range(20):
        used = lookup_cache.used_take()
        if not used:
            break
        try:
            written += services.key_touch_last_used(used=used)
        except Exception:
            lookup_cache.used_restore(used)
            raise
    # Without Redis, the web processes write it themselves; this flushes this process' own.
    written += lookup_cache.usage.flush() if lookup_cache.client() is None else 0
    return written
