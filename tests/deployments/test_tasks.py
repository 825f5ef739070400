"""The lifecycle's tasks on a real worker process (not eager): provisioning, default key,
revocation on stop/fail/expiry, teardown, a worker killed mid-revocation, and beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from deployments import services
from deployments.models import Deployment
from deployments.tasks import expire_packs, provision
from keys import services as key_services
from keys.models import ApiKey
from keys.tasks import revoke_for_deployments
from tests.factories import DeploymentFactory, TemplateFactory, UserFactory
from tests.harness.processes import (
    WORKER_LOCAL_ENDPOINT_URL,
    WORKER_PROVISIONER_MAX_RETRIES,
    WORKER_REVOKE_BATCH_SIZE,
)
from tests.harness.redis import broker_idle
from tests.harness.threads import run_concurrently
from tests.harness.wait import wait_until
from tests.lifecycle import active_keys, bulk_keys, post_status, provisioner_token

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


def test_fifty_ready_callbacks_at_once_leave_exactly_one_default_key():
    deployment = DeploymentFactory(status="provisioning")
    token = provisioner_token()

    def report(i: int):
        return post_status(Client(), token, deployment.pk, status="ready",
                           endpoint_url="https://gpu-1.example.test/v1").status_code  # fmt: skip

    assert run_concurrently(report, 50) == [200] * 50
    wait_until(
        lambda: ApiKey.objects.filter(deployment=deployment, is_default=True).exists(),
        timeout=30,
        what="the default key",
    )
    wait_until(broker_idle, timeout=30, what="the queue to drain")
    assert ApiKey.objects.filter(deployment=deployment).count() == 1
    assert deployment.events.filter(kind="ready").count() == 1
    assert deployment.events.filter(kind="key_created").count() == 1


def _ready_with_keys(count: int) -> tuple[Deployment, list[ApiKey]]:
    deployment = DeploymentFactory(ready=True)
    default = key_services.key_create_default(deployment_id=deployment.pk)
    named = [
        key_services.key_create(deployment_id=deployment.pk, name=f"k{i}", actor="t")[0]
        for i in range(count - 1)
    ]
    return deployment, [default, *named]


def _all_revoked(deployment_id: object) -> bool:
    return active_keys(deployment_id) == 0


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (lambda d: services.deployment_stop(deployment_id=d, actor="user:t"), "deployment_stopped"),
        (
            lambda d: post_status(Client(), provisioner_token(), d, status="failed", reason="oom"),
            "deployment_failed",
        ),
        (
            lambda d: services.deployment_terminate(deployment_id=d, actor="op"),
            "deployment_terminated",
        ),
    ],
    ids=["stopped", "failed", "terminated"],
)
def test_an_ended_deployment_has_every_key_revoked_and_its_instance_torn_down(
    orchestrator, end, reason
):
    deployment, _keys = _ready_with_keys(4)
    end(deployment.pk)
    wait_until(lambda: _all_revoked(deployment.pk), timeout=30, what="every key revoked")
    assert set(
        ApiKey.objects.filter(deployment=deployment).values_list("revoke_reason", flat=True)
    ) == {reason}
    assert not ApiKey.objects.filter(deployment=deployment, sealed_secret__isnull=False).exists()
    wait_until(lambda: orchestrator.calls_for(deployment.pk, "/boot/stop"), timeout=30,
               what="the teardown request")  # fmt: skip
    wait_until(broker_idle, timeout=30, what="the queue to drain")
    assert deployment.events.filter(kind="key_revoked").count() == 4


def test_the_expiry_task_terminates_ended_packs_revokes_their_keys_and_tears_them_down(
    orchestrator,
):
    ended, _ = _ready_with_keys(2)
    Deployment.objects.filter(pk=ended.pk).update(
        pack_ends_at=timezone.now() - timedelta(seconds=1)
    )
    running, _ = _ready_with_keys(1)
    expire_packs.delay()
    wait_until(lambda: status_of(ended.pk) == "terminated", timeout=30, what="the termination")
    wait_until(lambda: _all_revoked(ended.pk), timeout=30, what="every key revoked")
    ended.refresh_from_db()
    assert ended.end_reason == "pack_expired"
    assert set(ApiKey.objects.filter(deployment=ended).values_list("revoke_reason", flat=True)) == {
        "deployment_terminated"
    }
    wait_until(lambda: orchestrator.calls_for(ended.pk, "/boot/stop"), timeout=30,
               what="the teardown request")  # fmt: skip
    wait_until(broker_idle, timeout=30, what="the queue to drain")
    assert orchestrator.calls_for(running.pk, "/boot/stop") == []
    assert status_of(running.pk) == "ready" and active_keys(running.pk) == 1


def test_an_unreachable_provisioner_fails_the_deployment_after_its_retries(orchestrator):
    deployment = DeploymentFactory()
    orchestrator.respond[str(deployment.pk)] = 503
    provision.delay(str(deployment.pk))
    wait_until(lambda: status_of(deployment.pk) == "failed", timeout=60, what="the failure")
    # The first try and WORKER_PROVISIONER_MAX_RETRIES retries, with backoff between them.
    assert len(orchestrator.calls_for(deployment.pk, "/boot")) == 1 + WORKER_PROVISIONER_MAX_RETRIES
    deployment.refresh_from_db()
    assert deployment.end_reason == "provisioner_failed"
    event = deployment.events.get(kind="failed")
    assert "unreachable" in event.detail["reason"] and "503" in event.detail["reason"]


def test_a_provisioner_that_refuses_the_boot_fails_the_deployment_at_once(orchestrator):
    deployment = DeploymentFactory()
    orchestrator.respond[str(deployment.pk)] = 422
    provision.delay(str(deployment.pk))
    wait_until(lambda: status_of(deployment.pk) == "failed", timeout=30, what="the failure")
    assert len(orchestrator.calls_for(deployment.pk, "/boot")) == 1
    assert "422" in deployment.events.get(kind="failed").detail["reason"]


def test_the_local_provisioner_reports_ready_after_its_boot_and_the_key_follows():
    deployment = DeploymentFactory()
    with override_settings(BUDDY_PROVISIONER="local", BUDDY_LOCAL_BOOT_SECONDS=0.2):
        provision.apply(args=[str(deployment.pk)])  # here; its simulated boot runs on the worker
    assert status_of(deployment.pk) == "provisioning"
    wait_until(lambda: status_of(deployment.pk) == "ready", timeout=30, what="ready")
    deployment.refresh_from_db()
    assert deployment.endpoint_url == WORKER_LOCAL_ENDPOINT_URL
    wait_until(
        lambda: ApiKey.objects.filter(deployment=deployment, is_default=True).exists(),
        timeout=30,
        what="the default key",
    )


def test_a_worker_killed_in_the_middle_of_a_revocation_is_redone_by_the_restarted_worker(
    celery_worker,
):
    deployment = DeploymentFactory(ready=True)
    total = 2000  # revoked WORKER_REVOKE_BATCH_SIZE per transaction: seconds of work
    bulk_keys(deployment, total)
    # A deployment that ended before ends revoked their keys themselves (or whose keys the
    # reconciler found active): the revoke-all task, the safety net, does the work in batches.
    Deployment.objects.filter(pk=deployment.pk).update(status="stopped", ended_at=timezone.now())
    revoke_for_deployments.delay([str(deployment.pk)])
    wait_until(lambda: active_keys(deployment.pk) < total, timeout=30, interval=0.01,
               what="the revocation to start")  # fmt: skip
    celery_worker.kill()
    left = active_keys(deployment.pk)
    assert 0 < left < total, "the worker was not caught in the middle of the revocation"
    # Only whole batches were committed: every revoked key has its event, no more, no less.
    revoked = total - left
    assert deployment.events.filter(kind="key_revoked").count() == revoked
    assert revoked % WORKER_REVOKE_BATCH_SIZE == 0

    celery_worker.start_and_wait()  # its message comes back after the visibility timeout
    wait_until(lambda: _all_revoked(deployment.pk), timeout=90, what="the redone revocation")
    wait_until(broker_idle, timeout=60, what="the queue to drain")
    assert deployment.events.filter(kind="key_revoked").count() == total
    assert set(
        ApiKey.objects.filter(deployment=deployment).values_list("revoke_reason", flat=True)
    ) == {"deployment_stopped"}


def test_beat_terminates_an_expired_pack_within_one_interval(celery_beat):
    deployment, _ = _ready_with_keys(2)
    ends_at = timezone.now() + timedelta(seconds=1)
    Deployment.objects.filter(pk=deployment.pk).update(pack_ends_at=ends_at)
    wait_until(lambda: status_of(deployment.pk) == "terminated", timeout=60,
               what=f"beat's sweep\n{celery_beat.log_tail()}")  # fmt: skip
    deployment.refresh_from_db()
    assert deployment.end_reason == "pack_expired"
    # Beat was started before the pack ended, so the sweep came within its 1 s interval (and the
    # worker's latency, generous on a loaded machine).
    assert deployment.ended_at - ends_at < timedelta(seconds=1 + 5)
    wait_until(lambda: _all_revoked(deployment.pk), timeout=30, what="every key revoked")
