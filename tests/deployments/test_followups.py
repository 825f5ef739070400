"""Follow-up tasks are sent only once the change that asks for them commits."""

from __future__ import annotations

import contextlib

import pytest
from django.db import transaction
from django.utils import timezone

from deployments import services
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db


def test_an_end_that_rolls_back_sends_nothing(django_capture_on_commit_callbacks):
    deployment = DeploymentFactory(ready=True)
    with django_capture_on_commit_callbacks() as callbacks:
        with contextlib.suppress(RuntimeError), transaction.atomic():
            services.deployment_stop(deployment_id=deployment.pk, actor="t")
            raise RuntimeError("rolled back")
    assert callbacks == []
    deployment.refresh_from_db()
    assert deployment.status == "ready"


def test_an_end_sends_its_revocation_and_teardown_after_the_commit(
    django_capture_on_commit_callbacks,
):
    deployment = DeploymentFactory(ready=True)
    with django_capture_on_commit_callbacks() as callbacks:
        services.deployment_stop(deployment_id=deployment.pk, actor="t")
    assert len(callbacks) == 2  # keys.revoke_for_deployment, deployments.teardown


def test_a_sweep_batch_sends_two_messages_whatever_its_size(django_capture_on_commit_callbacks):
    for _ in range(5):
        DeploymentFactory(ready=True, pack_ends_at=timezone.now())
    with django_capture_on_commit_callbacks() as callbacks:
        assert len(services.deployment_expire_batch(limit=10)) == 5
    assert len(callbacks) == 2  # keys.revoke_for_deployments, deployments.teardown_many
