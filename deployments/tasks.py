"""Celery tasks of deployments: a name and a body each, taking ids; the services hold the rules
and `BuddyTask` the retry policy (late acks, transient database errors retried with backoff)."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from buddy.core.errors import DomainError
from buddy.core.tasks import BuddyTask
from deployments import selectors, services
from deployments.models import DeploymentStatus
from deployments.provisioners import (
    Provisioner,
    ProvisionerRefused,
    ProvisionerUnavailable,
    get_provisioner,
)

logger = logging.getLogger(__name__)


@shared_task(
    base=BuddyTask,
    name="deployments.provision",
    bind=True,
    autoretry_for=(*BuddyTask.autoretry_for, ProvisionerUnavailable),
    max_retries=settings.BUDDY_PROVISIONER_MAX_RETRIES,
)
def provision(self: BuddyTask, deployment_id: str) -> None:
    """Ask the provisioner to boot a pending deployment; give up into `failed` after retries.

    An unreachable provisioner is retried with `BuddyTask`'s backoff; on the last try the
    deployment fails with the reason instead of the task (`max_retries` is the same setting, read
    once at start; the setting is read again here so that a test may lower it).
    Redelivered after a crash between the boot request and the status change, it asks again: the
    orchestrator receives the deployment id and must treat a repeated boot as the same instance.
    """
    deployment = selectors.deployment_get(deployment_id=deployment_id)
    if deployment is None or deployment.status != DeploymentStatus.PENDING:
        return
    try:
        asked = get_provisioner().boot(deployment)
    except ProvisionerUnavailable as exc:
        retries = settings.BUDDY_PROVISIONER_MAX_RETRIES
        if self.request.retries < retries:
            raise  # retried by the policy
        logger.warning("provisioner unreachable for %s after retries: %s", deployment_id, exc)
        _fail_quietly(deployment_id, f"provisioner unreachable after {retries} retries: {exc}")
        return
    except ProvisionerRefused as exc:
        _fail_quietly(deployment_id, str(exc))
        return
    if not asked:  # `none`: only the callbacks move the deployment
        return
    services.deployment_begin_provisioning(deployment_id=deployment_id, actor="system:provisioner")


def _fail_quietly(deployment_id: str, reason: str) -> None:
    # It may have moved on meanwhile (stopped, or already reported): then nothing is left to fail.
    with contextlib.suppress(DomainError):
        services.deployment_fail(
            deployment_id=deployment_id, actor="system:provisioner", reason=reason
        )


@shared_task(base=BuddyTask, name="deployments.local_boot")
def local_boot(deployment_id: str) -> None:
    """The `local` provisioner's instance has booted: report it ready, as a real one would."""
    deployment = selectors.deployment_get(deployment_id=deployment_id)
    if deployment is None or not services.is_transition_allowed(
        deployment.status, DeploymentStatus.READY
    ):
        return  # gone, ended or already ready
    with contextlib.suppress(DomainError):  # stopped meanwhile
        services.deployment_apply_provisioner_status(
            deployment_id=deployment_id,
            status=DeploymentStatus.READY,
            endpoint_url=settings.BUDDY_LOCAL_ENDPOINT_URL,
            reason="",
            actor="system:local-provisioner",
        )


@shared_task(
    base=BuddyTask,
    name="deployments.teardown_many",
    autoretry_for=(*BuddyTask.autoretry_for, ProvisionerUnavailable),
    max_retries=12,
)
def teardown_many(deployment_ids: list[str]) -> None:
    """Tell the provisioner to tear these ended deployments' instances down (one deployment is a
    list of one; each may be asked twice). One request per deployment; if the provisioner could
    not take some, the task is retried with backoff, and those already torn down are skipped."""
    provisioner = get_provisioner()
    failure: ProvisionerUnavailable | None = None
    for deployment_id in deployment_ids:
        try:
            _teardown_one(provisioner, deployment_id)
        except ProvisionerUnavailable as exc:
            failure = exc
    if failure is not None:
        raise failure


def _teardown_one(provisioner: Provisioner, deployment_id: str) -> None:
    """Tear down one ended deployment not yet torn down, and record it; ProvisionerUnavailable
    propagates to the caller, which retries."""
    deployment = selectors.deployment_get(deployment_id=deployment_id)
    if deployment is None or not deployment.is_terminal or deployment.torn_down_at is not None:
        return  # gone, live, or done meanwhile (the reconciler may ask again)
    try:
        provisioner.teardown(deployment)
    except ProvisionerRefused as exc:
        # It will not get better by asking again (e.g. the orchestrator knows no such instance).
        logger.warning("provisioner refused to tear down %s: %s", deployment_id, exc)
    services.deployment_mark_torn_down(deployment_id=deployment_id)


@shared_task(
    base=BuddyTask,
    name="deployments.teardown",
    autoretry_for=(*BuddyTask.autoretry_for, ProvisionerUnavailable),
    max_retries=12,
)
def teardown(deployment_id: str) -> None:
    """Deprecated: messages sent before ends became plural (`deployments.teardown_many`). Kept
    registered for one release so that messages in flight are consumed; remove in the next."""
    teardown_many([deployment_id])


@shared_task(base=BuddyTask, name="deployments.reconcile", max_retries=3)
def reconcile() -> dict[str, int]:
    """Ask the provisioner again for boots and teardowns that lost messages left undone."""
    done = services.deployment_reconcile(
        stale_after=timedelta(seconds=settings.BUDDY_RECONCILE_STALE_SECONDS),
        batch_size=settings.BUDDY_RECONCILE_BATCH_SIZE,
    )
    if any(done.values()):
        logger.info("reconciled deployments: %s", done)
    return done


@shared_task(base=BuddyTask, name="deployments.expire_packs", max_retries=3)
def expire_packs() -> int:
    """Terminate every live deployment whose pack has ended, in bounded batches.

    Runs at most one interval, so sweeps do not pile up; what is left is the next sweep's.
    """
    batch = settings.BUDDY_EXPIRY_BATCH_SIZE
    deadline = time.monotonic() + settings.BUDDY_EXPIRY_INTERVAL_SECONDS
    total = 0
    while time.monotonic() < deadline:
        done = services.deployment_expire_batch(limit=batch)
        total += len(done)
        if len(done) < batch:
            break
    if total:
        logger.info("terminated %d deployments whose pack had ended", total)
    return total


@shared_task(base=BuddyTask, name="deployments.notify_pack_ending")
def notify_pack_ending() -> int:
    """`deployment.pack_ending` for packs ending soon (once per deployment and end)."""
    return services.deployment_notify_pack_ending()
