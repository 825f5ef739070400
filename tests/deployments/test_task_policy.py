"""Every buddy task has the one retry policy (`BuddyTask`), and the task names of the previous
release are still consumed (in-process: the task bodies themselves)."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils import timezone

import buddy.webhooks.tasks
import deployments.tasks
import keys.tasks
from buddy.core.tasks import TRANSIENT_ERRORS, BuddyTask, app
from deployments.models import Deployment
from deployments.provisioners import ProvisionerUnavailable
from tests.factories import DeploymentFactory

SENT = {
    "deployments.provision",
    "deployments.local_boot",
    "deployments.teardown_many",
    "deployments.expire_packs",
    "deployments.reconcile",
    "deployments.notify_pack_ending",
    "keys.create_default",
    "keys.revoke_for_deployments",
    "keys.reconcile",
    "keys.flush_last_used",
    "keys.write_pending_guards",
    "webhooks.deliver",
    "webhooks.redrive",
    "webhooks.prune",
}
DEPRECATED = {"deployments.teardown", "keys.revoke_for_deployment"}


def _buddy_tasks() -> dict[str, BuddyTask]:
    assert deployments.tasks and keys.tasks and buddy.webhooks.tasks  # their tasks are registered
    return {
        name: task
        for name, task in app.tasks.items()
        if name.startswith(("keys.", "deployments.", "webhooks."))
    }


def test_every_buddy_task_is_a_buddy_task_with_late_acks_and_a_retry_policy():
    tasks = _buddy_tasks()
    assert set(tasks) == SENT | DEPRECATED
    for name, task in tasks.items():
        assert isinstance(task, BuddyTask), name
        assert task.acks_late is True and task.ignore_result is True, name
        assert set(TRANSIENT_ERRORS) <= set(task.autoretry_for), name
        assert task.retry_backoff and task.retry_jitter, name
        assert isinstance(task.max_retries, int) and task.max_retries > 0, name


def test_the_provisioner_s_own_retry_is_the_same_policy():
    for name in ("deployments.provision", "deployments.teardown_many", "deployments.teardown"):
        assert ProvisionerUnavailable in app.tasks[name].autoretry_for, name


@pytest.mark.django_db
def test_a_teardown_message_of_the_previous_release_is_still_consumed(orchestrator):
    deployment = DeploymentFactory(status="stopped", ended_at=timezone.now())
    with override_settings(BUDDY_PROVISIONER="http", BUDDY_PROVISIONER_URL=orchestrator.url):
        result = app.tasks["deployments.teardown"].apply(args=[str(deployment.pk)])
    assert result.successful(), result.result
    assert [call.body for call in orchestrator.calls_for(deployment.pk, "/boot/stop")] == [
        {"deployment_id": str(deployment.pk)}
    ]
    assert Deployment.objects.get(pk=deployment.pk).torn_down_at is not None
