"""Work that follows a deployment's change, scheduled from inside the changing transaction.

Two kinds:
- guards that must hold the moment the transaction commits (the lookup cache's tombstones) are
  written *before* the commit, so that no cached answer can outlive it;
- everything else (default key, revocation of every key, provisioner calls, cache refresh) runs
  only after the commit (`transaction.on_commit`), so a rolled-back change schedules nothing.

A message to the broker can still be lost after the commit; the database records what is owed,
and the reconciler (`keys.tasks.reconcile`) finishes it.
"""

from __future__ import annotations

import logging
import time

from django.db import transaction

from deployments.models import TERMINAL_STATUSES, DeploymentStatus

logger = logging.getLogger(__name__)


# After a failed publish, skip publishing for this long: each attempt against an unreachable broker
# waits for its connect timeout, and the reconciler finishes whatever is skipped.
BROKER_BREAKER_SECONDS = 10.0
_broker_down_until = 0.0


def _enqueue(task_name: str, *args: object) -> None:
    """Send a task once the current transaction commits; a broker outage is logged, not raised.

    The caller's change is already committed by then, and the reconciler finishes what a lost
    message leaves undone, so failing the request would only report an error for work that
    did happen. While the broker is known to be down, sending is skipped at once instead of
    making every request wait for a connect timeout.
    """
    from buddy.celery import app

    def send() -> None:
        global _broker_down_until
        if time.monotonic() < _broker_down_until:
            logger.warning("broker down: not enqueueing %s%r; the reconciler will", task_name, args)
            return
        try:
            app.tasks[task_name].apply_async(args=args, retry=False)
        except Exception as exc:
            _broker_down_until = time.monotonic() + BROKER_BREAKER_SECONDS
            logger.warning(
                "could not enqueue %s%r (%s: %s); the reconciler will finish it",
                task_name,
                args,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(send)


def after_created(deployment_id: object) -> None:
    _enqueue("deployments.provision", str(deployment_id))


def after_status_change(deployment_id: object, *, previous: str, current: str) -> None:
    from keys import lookup_cache

    if current in TERMINAL_STATUSES:
        # Ended for good: tombstone now, so that from the commit on no cached answer says 200.
        lookup_cache.tombstone_deployment(deployment_id)
        _enqueue("keys.revoke_for_deployment", str(deployment_id))
        _enqueue("deployments.teardown", str(deployment_id))
    else:
        lookup_cache.invalidate_deployment_on_commit(deployment_id)
    if current == DeploymentStatus.READY:
        _enqueue("keys.create_default", str(deployment_id))


def after_expired(deployment_ids: list[object]) -> None:
    """A sweep's batch ended: the same follow-ups as `after_status_change`, in two messages for
    the whole batch instead of two per deployment (publishing dominated the sweep's cost)."""
    from keys import lookup_cache

    if not deployment_ids:
        return
    for deployment_id in deployment_ids:
        lookup_cache.tombstone_deployment(deployment_id)
    ids = [str(deployment_id) for deployment_id in deployment_ids]
    _enqueue("keys.revoke_for_deployments", ids)
    _enqueue("deployments.teardown_many", ids)


def reprovision(deployment_ids: list[object]) -> None:
    """The reconciler found deployments whose boot a lost message may never have asked for."""
    for deployment_id in deployment_ids:
        _enqueue("deployments.provision", str(deployment_id))


def teardown_again(deployment_ids: list[object]) -> None:
    """The reconciler found ended deployments whose teardown was never confirmed."""
    if deployment_ids:
        _enqueue("deployments.teardown_many", [str(d) for d in deployment_ids])


def after_extended(deployment_id: object) -> None:
    from keys import lookup_cache

    lookup_cache.invalidate_deployment_on_commit(deployment_id)


def after_endpoint_changed(deployment_id: object) -> None:
    from keys import lookup_cache

    lookup_cache.invalidate_deployment_on_commit(deployment_id)
