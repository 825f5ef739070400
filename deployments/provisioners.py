"""Who boots and tears down GPU instances, chosen by BUDDY_PROVISIONER.

- `local`: the embedded default. Simulates an instance: it reports `provisioning` at once and
  `ready` a few seconds later, with buddy's built-in model endpoint as `endpoint_url`.
- `http`: production. POSTs `{deployment_id, model, pack_ends_at}` to BUDDY_PROVISIONER_URL to boot
  and `{deployment_id}` to BUDDY_PROVISIONER_URL/stop to tear down; the orchestrator reports back
  through the status callback.
- `none`: tells nobody; only status callbacks move deployments.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import httpx
from django import db
from django.conf import settings

from buddy.core.tasks import app
from deployments.models import Deployment

logger = logging.getLogger(__name__)

# The simulated boot (a task of `deployments.tasks`, which builds on this module: sent by name).
LOCAL_BOOT_TASK = "deployments.local_boot"


class ProvisionerUnavailable(Exception):
    """A transient failure to reach the provisioner: the task retries with backoff."""


class ProvisionerRefused(Exception):
    """The provisioner answered 4xx: retrying will not help."""


class Provisioner(Protocol):
    def boot(self, deployment: Deployment) -> bool:
        """Ask for the deployment's instance; False when nobody was asked (`none`)."""
        ...

    def teardown(self, deployment: Deployment) -> None: ...


class NoProvisioner:
    def boot(self, deployment: Deployment) -> bool:
        logger.info("provisioner=none: not booting deployment %s", deployment.pk)
        return False

    def teardown(self, deployment: Deployment) -> None:
        logger.info("provisioner=none: not tearing down deployment %s", deployment.pk)


class HttpProvisioner:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _post(self, url: str, payload: dict[str, str]) -> None:
        try:
            response = httpx.post(url, json=payload, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ProvisionerUnavailable(f"{type(exc).__name__} calling the provisioner") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise ProvisionerUnavailable(f"provisioner answered {response.status_code}")
        if response.status_code >= 400:
            # A 4xx will not get better by retrying: the orchestrator refuses this deployment.
            raise ProvisionerRefused(f"provisioner refused with {response.status_code}")

    def boot(self, deployment: Deployment) -> bool:
        self._post(
            self.base_url,
            {
                "deployment_id": str(deployment.pk),
                "model": deployment.model_id,
                "pack_ends_at": deployment.pack_ends_at.isoformat(),
            },
        )
        return True

    def teardown(self, deployment: Deployment) -> None:
        self._post(f"{self.base_url}/stop", {"deployment_id": str(deployment.pk)})


class LocalProvisioner:
    """Simulates an instance; the boot itself is the `deployments.local_boot` task."""

    def boot(self, deployment: Deployment) -> bool:
        delay = settings.BUDDY_LOCAL_BOOT_SECONDS
        if settings.CELERY_TASK_ALWAYS_EAGER:
            # Embedded default: no worker to honour a countdown, so a timer thread waits instead.
            timer = threading.Timer(delay, _boot_in_thread, args=[str(deployment.pk)])
            timer.daemon = True
            timer.start()
        else:
            app.tasks[LOCAL_BOOT_TASK].apply_async(args=(str(deployment.pk),), countdown=delay)
        return True

    def teardown(self, deployment: Deployment) -> None:
        logger.info("provisioner=local: deployment %s torn down", deployment.pk)


def _boot_in_thread(deployment_id: str) -> None:
    try:
        app.tasks[LOCAL_BOOT_TASK].delay(deployment_id)
    finally:
        db.connection.close()  # this thread's own connection


def get_provisioner() -> Provisioner:
    kind = settings.BUDDY_PROVISIONER
    if kind == "http":
        return HttpProvisioner(settings.BUDDY_PROVISIONER_URL, settings.BUDDY_PROVISIONER_TIMEOUT)
    if kind == "local":
        return LocalProvisioner()
    return NoProvisioner()
