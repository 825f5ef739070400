"""The deployments' reconciler: boots and teardowns that a lost message left undone are asked for
again, on a real worker against the fake orchestrator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from deployments import services
from deployments.models import Deployment
from tests.factories import DeploymentFactory
from tests.harness.redis import broker_idle
from tests.harness.wait import wait_until

STALE = timedelta(minutes=15)


def _reconcile(**settings_overrides: str) -> dict[str, int]:
    with override_settings(BUDDY_PROVISIONER="http", **settings_overrides):
        return services.deployment_reconcile(stale_after=STALE)


@pytest.mark.celery_worker
def test_a_boot_whose_message_was_lost_is_asked_for_again(orchestrator):
    # Created straight in the database: as if the provision message had been lost after commit.
    deployment = DeploymentFactory(status="pending")
    Deployment.objects.filter(pk=deployment.pk).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    fresh = DeploymentFactory(status="pending")  # its message may still be on its way

    assert _reconcile() == {"boots_asked_again": 1, "teardowns_asked_again": 0}
    wait_until(
        lambda: Deployment.objects.get(pk=deployment.pk).status == "provisioning",
        timeout=30,
        what="the boot asked again",
    )
    assert len(orchestrator.calls_for(deployment.pk, "/boot")) == 1
    assert orchestrator.calls_for(fresh.pk, "/boot") == []
    wait_until(broker_idle, timeout=30, what="the queue to drain")
    assert _reconcile()["boots_asked_again"] == 0


@pytest.mark.celery_worker
def test_a_teardown_whose_message_was_lost_is_asked_for_again_until_confirmed(orchestrator):
    ended_long_ago = timezone.now() - timedelta(hours=1)
    lost = DeploymentFactory(
        status="stopped", ended_at=ended_long_ago, end_reason="stopped_by_owner"
    )
    done = DeploymentFactory(status="failed", ended_at=ended_long_ago, torn_down_at=ended_long_ago)
    recent = DeploymentFactory(status="terminated", ended_at=timezone.now())

    assert _reconcile() == {"boots_asked_again": 0, "teardowns_asked_again": 1}
    wait_until(
        lambda: Deployment.objects.get(pk=lost.pk).torn_down_at is not None,
        timeout=30,
        what="the teardown confirmed",
    )
    assert len(orchestrator.calls_for(lost.pk, "/boot/stop")) == 1
    assert orchestrator.calls_for(done.pk, "/boot/stop") == []
    assert orchestrator.calls_for(recent.pk, "/boot/stop") == []
    wait_until(broker_idle, timeout=30, what="the queue to drain")
    assert _reconcile()["teardowns_asked_again"] == 0


@pytest.mark.celery_worker
def test_an_ordinary_stop_records_its_teardown(orchestrator):
    deployment = DeploymentFactory(ready=True)
    services.deployment_stop(deployment_id=deployment.pk, actor="t")
    wait_until(
        lambda: Deployment.objects.get(pk=deployment.pk).torn_down_at is not None,
        timeout=30,
        what="the teardown recorded",
    )
    assert len(orchestrator.calls_for(deployment.pk, "/boot/stop")) == 1


@pytest.mark.django_db
def test_with_no_provisioner_nothing_is_owed():
    DeploymentFactory(status="pending")
    Deployment.objects.update(created_at=timezone.now() - timedelta(hours=1))
    DeploymentFactory(status="stopped", ended_at=timezone.now() - timedelta(hours=1))
    with override_settings(BUDDY_PROVISIONER="none"):
        assert services.deployment_reconcile(stale_after=STALE) == {
            "boots_asked_again": 0,
            "teardowns_asked_again": 0,
        }


@pytest.mark.django_db
def test_marking_a_teardown_is_idempotent_and_only_for_ended_deployments():
    ended = DeploymentFactory(status="stopped", ended_at=timezone.now())
    live = DeploymentFactory(ready=True)
    assert services.deployment_mark_torn_down(deployment_id=ended.pk) is True
    first = Deployment.objects.get(pk=ended.pk).torn_down_at
    assert services.deployment_mark_torn_down(deployment_id=ended.pk) is False
    assert Deployment.objects.get(pk=ended.pk).torn_down_at == first
    assert services.deployment_mark_torn_down(deployment_id=live.pk) is False
    assert services.deployment_mark_torn_down(deployment_id="nope") is False
