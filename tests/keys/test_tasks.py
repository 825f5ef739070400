"""Key tasks: the default key, revocation of an ended deployment's keys, and the reconciler that
finishes what a lost message left undone (on a real worker where a worker is the point)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from buddy.core.tasks import app
from deployments import services as deployment_services
from deployments.models import Deployment
from keys import services
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from keys.models import ApiKey
from keys.tasks import create_default, reconcile, revoke_for_deployments
from tests.factories import DeploymentFactory
from tests.harness.processes import Worker, worker_env
from tests.harness.redis import PrivateRedis, app_broker, broker_idle
from tests.harness.threads import run_concurrently
from tests.harness.wait import wait_until
from tests.lifecycle import active_keys, bulk_keys


@pytest.mark.celery_worker
def test_fifty_default_key_messages_at_once_create_exactly_one_key():
    deployment = DeploymentFactory(ready=True)
    for _ in range(50):
        create_default.delay(str(deployment.pk))
    wait_until(broker_idle, timeout=60, what="the queue to drain")
    key = ApiKey.objects.get(deployment=deployment)
    assert key.is_default and key.sealed_secret is not None
    assert deployment.events.filter(kind="key_created").count() == 1
    # Its secret is sealed for one reveal, and that secret is the key.
    plaintext = services.key_reveal_default(key_id=key.pk, actor="user:t")
    assert key_lookup(authorization=f"Bearer {plaintext}").outcome is LookupOutcome.OK


@pytest.mark.celery_worker
def test_with_the_broker_down_a_stop_revokes_keys_at_once_and_the_reconciler_finds_nothing_left(
    tmp_path, orchestrator
):
    with PrivateRedis(str(tmp_path)) as broker:
        worker = Worker(
            worker_env(redis_url=broker.url, orchestrator_url=orchestrator.url),
            tmp_path / "private-worker.log",
            concurrency=1,
        )
        try:
            worker.start_and_wait()
            with app_broker(broker.url):
                deployment = DeploymentFactory(ready=True)
                _key, plaintext = services.key_create(
                    deployment_id=deployment.pk, name="a", actor="t"
                )
                services.key_create_default(deployment_id=deployment.pk)
                bearer = f"Bearer {plaintext}"
                assert key_lookup(authorization=bearer).outcome is LookupOutcome.OK

                broker.stop()
                deployment_services.deployment_stop(deployment_id=deployment.pk, actor="user:t")
                # The revocation message was lost with the broker: the stop revoked them itself.
                assert active_keys(deployment.pk) == 0
                assert key_lookup(authorization=bearer).outcome is LookupOutcome.REVOKED_API_KEY
                reasons = ApiKey.objects.filter(deployment=deployment).values_list(
                    "revoke_reason", flat=True
                )
                assert set(reasons) == {"deployment_stopped"}

                broker.start()  # empty: whatever was queued is gone
                wait_until(worker.answers_ping, timeout=90, interval=0.5,
                           what="the worker to reconnect")  # fmt: skip
                # The safety net runs and finds nothing owed.
                assert reconcile.apply().get()["keys_revoked"] == 0
                assert key_lookup(authorization=bearer).outcome is LookupOutcome.REVOKED_API_KEY
                assert deployment.events.filter(kind="key_revoked", actor="user:t").count() == 2
                assert not deployment.events.filter(
                    kind="key_revoked", actor="system:reconciler"
                ).exists()
        finally:
            worker.stop()


# --- in-process: the task bodies themselves -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_revoking_twice_or_twice_at_once_revokes_each_key_once():
    deployment = DeploymentFactory(ready=True)
    bulk_keys(deployment, 30)
    Deployment.objects.filter(pk=deployment.pk).update(status="failed", ended_at=timezone.now())
    with override_settings(BUDDY_REVOKE_BATCH_SIZE=4):
        results = run_concurrently(
            lambda _: revoke_for_deployments.apply(args=[[str(deployment.pk)]]), 4
        )
        revoke_for_deployments.apply(args=[[str(deployment.pk)]])
    assert all(r.successful() for r in results), [r.result for r in results]
    assert active_keys(deployment.pk) == 0
    assert deployment.events.filter(kind="key_revoked").count() == 30
    assert set(ApiKey.objects.values_list("revoke_reason", flat=True)) == {"deployment_failed"}


@pytest.mark.django_db
def test_the_sweeps_batch_revocation_gives_each_key_the_reason_of_its_deployments_end():
    now = timezone.now()
    stopped = DeploymentFactory(status="stopped", ended_at=now)
    terminated = DeploymentFactory(status="terminated", ended_at=now)
    live = DeploymentFactory(ready=True)
    for deployment in (stopped, terminated, live):
        bulk_keys(deployment, 3)
    ids = [str(d.pk) for d in (stopped, terminated, live)] + ["not-a-uuid"]
    with override_settings(BUDDY_REVOKE_BATCH_SIZE=2):
        revoke_for_deployments.apply(args=[ids])
        revoke_for_deployments.apply(args=[ids])  # redelivered: nothing more
    assert active_keys(live.pk) == 3
    for deployment, reason in (
        (stopped, "deployment_stopped"),
        (terminated, "deployment_terminated"),
    ):
        assert set(
            ApiKey.objects.filter(deployment=deployment).values_list("revoke_reason", flat=True)
        ) == {reason}
        assert deployment.events.filter(kind="key_revoked").count() == 3


@pytest.mark.django_db
def test_a_revocation_message_of_the_previous_release_is_still_consumed():
    stopped = DeploymentFactory(status="stopped", ended_at=timezone.now())
    live = DeploymentFactory(ready=True)
    for deployment in (stopped, live):
        bulk_keys(deployment, 3)
    for deployment in (stopped, live):
        result = app.tasks["keys.revoke_for_deployment"].apply(args=[str(deployment.pk)])
        assert result.successful(), result.result
    assert active_keys(stopped.pk) == 0 and active_keys(live.pk) == 3
    assert set(
        ApiKey.objects.filter(deployment=stopped).values_list("revoke_reason", flat=True)
    ) == {"deployment_stopped"}
    assert stopped.events.filter(kind="key_revoked", actor="system:revocation").count() == 3


@pytest.mark.django_db
def test_revocation_task_leaves_a_live_deployment_alone():
    deployment = DeploymentFactory(ready=True)
    bulk_keys(deployment, 2)
    revoke_for_deployments.apply(args=[[str(deployment.pk)]])
    assert active_keys(deployment.pk) == 2


@pytest.mark.django_db
def test_default_key_task_waits_for_ready_and_a_live_pack():
    pending = DeploymentFactory()
    ended = DeploymentFactory(ready=True, pack_ends_at=timezone.now() - timedelta(seconds=1))
    for deployment in (pending, ended):
        create_default.apply(args=[str(deployment.pk)])
        assert not ApiKey.objects.filter(deployment=deployment).exists()


@pytest.mark.django_db
def test_reconciler_finishes_what_lost_messages_left_undone():
    ready_without_key = DeploymentFactory(ready=True)
    ended_pack_without_key = DeploymentFactory(
        ready=True, pack_ends_at=timezone.now() - timedelta(seconds=1)
    )
    stopped_with_keys = DeploymentFactory(status="stopped", ended_at=timezone.now())
    bulk_keys(stopped_with_keys, 3)
    live_with_keys = DeploymentFactory(ready=True)
    services.key_create_default(deployment_id=live_with_keys.pk)
    old_secret = services.key_create_default(deployment_id=DeploymentFactory(ready=True).pk)
    ApiKey.objects.filter(pk=old_secret.pk).update(
        created_at=timezone.now() - settings.BUDDY_DEFAULT_KEY_REVEAL_TTL - timedelta(seconds=1)
    )

    done = reconcile.apply().get()

    assert done == {"default_keys_created": 1, "keys_revoked": 3, "secrets_wiped": 1}
    assert ApiKey.objects.filter(deployment=ready_without_key, is_default=True).exists()
    assert not ApiKey.objects.filter(deployment=ended_pack_without_key).exists()
    assert active_keys(stopped_with_keys.pk) == 0
    assert set(
        ApiKey.objects.filter(deployment=stopped_with_keys).values_list("revoke_reason", flat=True)
    ) == {"deployment_stopped"}
    assert ApiKey.objects.get(pk=old_secret.pk).sealed_secret is None
    assert ApiKey.objects.get(deployment=live_with_keys).sealed_secret is not None
    # Nothing is left owed: a second run does nothing.
    assert reconcile.apply().get() == {
        "default_keys_created": 0,
        "keys_revoked": 0,
        "secrets_wiped": 0,
    }
