"""Provisioners: the `http` one against a real HTTP server on loopback, `none`, and the
provisioning task's handling of their failures (run here, in-process)."""

from __future__ import annotations

import threading

import pytest
from django.test import override_settings

from deployments.models import Deployment
from deployments.provisioners import (
    HttpProvisioner,
    LocalProvisioner,
    NoProvisioner,
    ProvisionerRefused,
    ProvisionerUnavailable,
    get_provisioner,
)
from deployments.tasks import provision, teardown_many
from tests.factories import DeploymentFactory
from tests.harness.ports import free_port

pytestmark = pytest.mark.django_db


def test_http_boot_posts_the_deployment_and_teardown_posts_to_stop(orchestrator):
    deployment = DeploymentFactory()
    provisioner = HttpProvisioner(orchestrator.url, timeout=2)
    assert provisioner.boot(deployment) is True
    provisioner.teardown(deployment)
    boot, stop = orchestrator.calls_for(deployment.pk)
    assert (boot.path, boot.body) == (
        "/boot",
        {
            "deployment_id": str(deployment.pk),
            "model": "gemma4:26b",
            "pack_ends_at": deployment.pack_ends_at.isoformat(),
        },
    )
    assert (stop.path, stop.body) == ("/boot/stop", {"deployment_id": str(deployment.pk)})


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ProvisionerUnavailable),
        (502, ProvisionerUnavailable),
        (503, ProvisionerUnavailable),
        (429, ProvisionerUnavailable),
        (400, ProvisionerRefused),
        (404, ProvisionerRefused),
        (422, ProvisionerRefused),
    ],
)
def test_http_errors_are_transient_or_refusals(orchestrator, status, error):
    deployment = DeploymentFactory()
    orchestrator.respond[str(deployment.pk)] = status
    with pytest.raises(error):
        HttpProvisioner(orchestrator.url, timeout=2).boot(deployment)


def test_an_orchestrator_that_is_not_listening_is_unavailable():
    deployment = DeploymentFactory()
    with pytest.raises(ProvisionerUnavailable):
        HttpProvisioner(f"http://127.0.0.1:{free_port()}/boot", timeout=2).boot(deployment)


def test_an_orchestrator_that_does_not_answer_in_time_is_unavailable(orchestrator):
    deployment = DeploymentFactory()
    gate = orchestrator.hang[str(deployment.pk)] = threading.Event()
    try:
        with pytest.raises(ProvisionerUnavailable):
            HttpProvisioner(orchestrator.url, timeout=0.3).boot(deployment)
    finally:
        gate.set()


def test_the_setting_chooses_the_provisioner(orchestrator):
    with override_settings(BUDDY_PROVISIONER="http", BUDDY_PROVISIONER_URL=orchestrator.url):
        assert isinstance(get_provisioner(), HttpProvisioner)
    with override_settings(BUDDY_PROVISIONER="local"):
        assert isinstance(get_provisioner(), LocalProvisioner)
    with override_settings(BUDDY_PROVISIONER="none"):
        assert isinstance(get_provisioner(), NoProvisioner)


def test_with_none_nobody_is_told_and_only_callbacks_move_the_deployment():
    deployment = DeploymentFactory()
    with override_settings(BUDDY_PROVISIONER="none"):
        provision.apply(args=[str(deployment.pk)])
        teardown_many.apply(args=[[str(deployment.pk)]])
    assert Deployment.objects.get(pk=deployment.pk).status == "pending"


def test_the_provision_task_marks_an_accepted_boot_provisioning(orchestrator):
    deployment = DeploymentFactory()
    with override_settings(BUDDY_PROVISIONER="http", BUDDY_PROVISIONER_URL=orchestrator.url):
        provision.apply(args=[str(deployment.pk)])
        provision.apply(args=[str(deployment.pk)])  # redelivered: no longer pending, nothing
    assert Deployment.objects.get(pk=deployment.pk).status == "provisioning"
    assert len(orchestrator.calls_for(deployment.pk, "/boot")) == 1
    assert deployment.events.filter(kind="provisioning").count() == 1


def test_an_unreachable_provisioner_fails_the_deployment_with_the_reason_after_retries():
    deployment = DeploymentFactory()
    closed = f"http://127.0.0.1:{free_port()}/boot"
    with override_settings(
        BUDDY_PROVISIONER="http", BUDDY_PROVISIONER_URL=closed, BUDDY_PROVISIONER_MAX_RETRIES=2
    ):
        provision.apply(args=[str(deployment.pk)])  # eager here: the retries follow at once
    deployment.refresh_from_db()
    assert deployment.status == "failed"
    assert deployment.end_reason == "provisioner_failed"
    reason = deployment.events.get(kind="failed").detail["reason"]
    assert reason.startswith("provisioner unreachable after 2 retries")


def test_a_boot_for_a_deployment_that_moved_on_is_not_sent(orchestrator):
    deployment = DeploymentFactory(status="stopped")
    with override_settings(BUDDY_PROVISIONER="http", BUDDY_PROVISIONER_URL=orchestrator.url):
        provision.apply(args=[str(deployment.pk)])
    assert orchestrator.calls_for(deployment.pk) == []
