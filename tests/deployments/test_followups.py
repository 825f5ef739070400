"""Follow-up tasks are sent only once the change that asks for them commits."""

from __future__ import annotations

import contextlib

import pytest
from django.db import transaction
from django.utils import timezone

from deployments import services
from tests.factories import DeploymentFactory
from tests.harness.ports import free_port
from tests.harness.redis import app_broker

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
    assert len(callbacks) == 2  # keys.revoke_for_deployments, deployments.teardown_many


def test_a_sweep_batch_sends_two_messages_whatever_its_size(django_capture_on_commit_callbacks):
    for _ in range(5):
        DeploymentFactory(ready=True, pack_ends_at=timezone.now())
    with django_capture_on_commit_callbacks() as callbacks:
        assert len(services.deployment_expire_batch(limit=10)) == 5
    assert len(callbacks) == 2  # keys.revoke_for_deployments, deployments.teardown_many


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_is_met_once_then_skipped_not_waited_for_on_every_request(caplog):
    first, second = DeploymentFactory(ready=True), DeploymentFactory(ready=True)
    with app_broker(f"redis://127.0.0.1:{free_port()}/0"), caplog.at_level("WARNING"):
        services.deployment_stop(deployment_id=first.pk, actor="t")
        tried = [r.getMessage() for r in caplog.records if "could not enqueue" in r.getMessage()]
        caplog.clear()
        services.deployment_stop(deployment_id=second.pk, actor="t")
        skipped = [r.getMessage() for r in caplog.records if "broker down" in r.getMessage()]
        assert not [r for r in caplog.records if "could not enqueue" in r.getMessage()]
    assert tried and str(first.pk) in tried[0]
    # Both of the second stop's follow-ups were skipped at once, left to the reconciler.
    assert len(skipped) == 2 and all(str(second.pk) in m for m in skipped)
    for deployment in (first, second):
        deployment.refresh_from_db()
        assert deployment.status == "stopped"
