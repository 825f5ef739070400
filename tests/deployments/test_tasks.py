"""The lifecycle's tasks on a real worker process (not eager): provisioning, default key,
revocation on stop/fail/expiry, teardown, a worker killed mid-revocation, and beat."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from deployments import services
from deployments.models import Deployment
from keys.models import ApiKey
from tests.celery_worker import broker_idle
from tests.factories import DeploymentFactory, TemplateFactory, UserFactory
from tests.lifecycle import active_keys, post_status, provisioner_token
from tests.servers import wait_until

pytestmark = pytest.mark.celery_worker


def status_of(deployment_id: object) -> str:
    return Deployment.objects.get(pk=deployment_id).status


def test_deploying_asks_the_provisioner_and_ready_gives_one_default_key(orchestrator):
    deployment = services.deployment_create(
        owner=UserFactory(), template_slug=TemplateFactory().slug, pack_hours=8, actor="user:t"
    )
    wait_until(lambda: status_of(deployment.pk) == "provisioning", timeout=30, what="provisioning")
    (boot,) = orchestrator.calls_for(deployment.pk, "/boot")
    assert boot.body == {
        "deployment_id": str(deployment.pk),
        "model": "gemma4:26b",
        "pack_ends_at": deployment.pack_ends_at.isoformat(),
    }
    token = provisioner_token()
    response = post_status(Client(), token, deployment.pk, status="ready",
                           endpoint_url="https://gpu-7.example.test/v1")  # fmt: skip
    assert response.status_code == 200, response.content
    key = wait_until(
        lambda: ApiKey.objects.filter(deployment=deployment, is_default=True).first(),
        timeout=30,
        what="the default key",
    )
    assert key.sealed_secret is not None and key.revoked_at is None
    wait_until(broker_idle, timeout=30, what="the queue to drain")
    assert ApiKey.objects.filter(deployment=deployment).count() == 1
