"""Celery tasks of deployments: thin, idempotent, taking ids; the services hold the rules."""

from __future__ import annotations

import contextlib
import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from buddy.errors import DomainError
from deployments import selectors, services
from deployments.provisioners import ProvisionerUnavailable, get_provisioner

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    name="deployments.provision",
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def provision(self, deployment_id: str) -> None:
    """Ask the provisioner to boot a pending deployment; give up into `failed` after retries."""
    deployment = selectors.deployment_get(deployment_id=deployment_id)
    if deployment is None or deployment.status != "pending":
        return
    try:
        get_provisioner().boot(deployment)
    except ProvisionerUnavailable as exc:
        if self.request.retries >= settings.BUDDY_PROVISIONER_MAX_RETRIES:
            logger.warning("provisioner unreachable for %s after retries: %s", deployment_id, exc)
            _fail_quietly(deployment_id, f"provisioner unreachable: {exc}")
            return
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
    except ValueError as exc:
        _fail_quietly(deployment_id, str(exc))
        return
    services.deployment_begin_provisioning(deployment_id=deployment_id, actor="system:provisioner")


def _fail_quietly(deployment_id: str, reason: str) -> None:
    # It may have moved on meanwhile (stopped, or already reported): then nothing is left to fail.
    with contextlib.suppress(DomainError):
        services.deployment_fail(
            deployment_id=deployment_id, actor="system:provisioner", reason=reason
        )


@shared_task(
    name="deployments.local_boot",
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    max_retries=10,
)
def local_boot(deployment_id: str) -> None:
    """The `local` provisioner's instance has booted: report it ready, as a real one would."""
    deployment = selectors.deployment_get(deployment_id=deployment_id)
    if deployment is None or deployment.status not in {"pending", "provisioning"}:
        return
    with contextlib.suppress(DomainError):  # stopped meanwhile
        services.deployment_mark_ready(
            deployment_id=deployment_id,
            endpoint_url=settings.BUDDY_LOCAL_ENDPOINT_URL,
            actor="system:local-provisioner",
        )


@shared_task(
    name="deployments.teardown",
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(*TRANSIENT_ERRORS, ProvisionerUnavailable),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=12,
)
def teardown(self, deployment_id: str) -> None:
    deployment = selectors.deployment_get(deployment_id=deployment_id)
    if deployment is None or not deployment.is_terminal:
        return
    get_provisioner().teardown(deployment)


@shared_task(
    name="deployments.expire_packs",
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    max_retries=3,
)
def expire_packs() -> int:
    """Terminate every live deployment whose pack has ended, in bounded batches."""
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
