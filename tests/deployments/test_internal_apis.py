"""`POST /internal/v1/deployments/{id}/status`: the provisioner's callback."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from buddy.accounts.services import service_token_create
from deployments.models import Deployment
from keys import services as key_services
from tests.factories import DeploymentFactory
from tests.lifecycle import post_status, provisioner_token

pytestmark = pytest.mark.django_db

URL = "https://gpu-3.example.test/v1"
FIELDS = {
    "id", "template", "model", "status", "endpoint_url", "pack_ends_at", "created_at",
    "updated_at", "ended_at", "end_reason", "default_key_id",
}  # fmt: skip


@pytest.fixture
def token():
    return provisioner_token()


def code(response):
    return response.status_code, response.json()["error"]["code"]


def test_ready_answers_the_deployment_representation(client, token):
    deployment = DeploymentFactory(status="provisioning")
    response = post_status(client, token, deployment.pk, status="ready", endpoint_url=URL)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == FIELDS
    assert body["id"] == str(deployment.pk)
    assert body["template"] == "gemma4-26b"
    assert body["model"] == "gemma4:26b"
    assert body["status"] == "ready"
    assert body["endpoint_url"] == URL
    assert body["ended_at"] is None and body["end_reason"] is None
    assert body["default_key_id"] is None  # created by a task after the commit
    key = key_services.key_create_default(deployment_id=deployment.pk)
    body = post_status(client, token, deployment.pk, status="ready", endpoint_url=URL).json()
    assert body["default_key_id"] == str(key.pk)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ob_svc_wrong", "Token x"],
)
def test_without_a_valid_provisioner_token_it_is_403(client, authorization):
    deployment = DeploymentFactory()
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.post(
        f"/internal/v1/deployments/{deployment.pk}/status",
        {"status": "provisioning"},
        content_type="application/json",
        **headers,
    )
    assert code(response) == (403, "service_auth_failed")
    assert Deployment.objects.get(pk=deployment.pk).status == "pending"


def test_a_proxy_token_is_not_a_provisioner_token(client):
    deployment = DeploymentFactory()
    proxy = service_token_create(name="edge", role="proxy")[1]
    response = post_status(client, proxy, deployment.pk, status="provisioning")
    assert code(response) == (403, "service_auth_failed")


@pytest.mark.parametrize("deployment_id", [uuid.uuid4(), "not-a-uuid", "1"])
def test_an_unknown_deployment_is_404(client, token, deployment_id):
    response = post_status(client, token, deployment_id, status="provisioning")
    assert code(response) == (404, "not_found")


def test_a_body_that_is_not_json_is_invalid_json(client, token):
    deployment = DeploymentFactory()
    response = client.post(
        f"/internal/v1/deployments/{deployment.pk}/status",
        "{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert code(response) == (400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status"),
        ({"status": "terminated"}, "status"),
        ({"status": "pending"}, "status"),
        ({"status": 5}, "status"),
        ({"status": "ready"}, "endpoint_url"),
        ({"status": "ready", "endpoint_url": ""}, "endpoint_url"),
        ({"status": "ready", "endpoint_url": "ftp://gpu/v1"}, "endpoint_url"),
        ({"status": "ready", "endpoint_url": "gpu-3.example.test"}, "endpoint_url"),
        ({"status": "ready", "endpoint_url": "http://"}, "endpoint_url"),
        ({"status": "ready", "endpoint_url": "http://a b/"}, "endpoint_url"),
        ({"status": "ready", "endpoint_url": "https://x/" + "a" * 600}, "endpoint_url"),
        ({"status": "failed", "reason": "x" * 501}, "reason"),
    ],
)
def test_a_bad_body_is_400_with_its_field_and_changes_nothing(client, token, body, field):
    deployment = DeploymentFactory(status="provisioning")
    response = post_status(client, token, deployment.pk, **body)
    assert code(response) == (400, "validation_error")
    assert field in response.json()["error"]["fields"]
    after = Deployment.objects.get(pk=deployment.pk)
    assert after.status == "provisioning" and after.events.count() == 0


def test_a_list_body_is_a_validation_error(client, token):
    deployment = DeploymentFactory()
    response = client.post(
        f"/internal/v1/deployments/{deployment.pk}/status",
        ["ready"],
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert code(response) == (400, "validation_error")


@pytest.mark.parametrize(
    ("current", "reported"),
    [
        ("stopped", "ready"),
        ("stopped", "provisioning"),
        ("stopped", "failed"),
        ("failed", "ready"),
        ("failed", "stopped"),
        ("terminated", "provisioning"),
        ("terminated", "ready"),
        ("pending", "pending_is_not_reportable"),
    ],
)
def test_what_the_diagram_forbids_is_409_invalid_transition(client, token, current, reported):
    deployment = DeploymentFactory(status=current, ended_at=timezone.now())
    response = post_status(client, token, deployment.pk, status=reported, endpoint_url=URL)
    if reported == "pending_is_not_reportable":
        assert code(response) == (400, "validation_error")
        return
    assert code(response) == (409, "invalid_transition")
    assert Deployment.objects.get(pk=deployment.pk).status == current


@pytest.mark.parametrize("status", ["provisioning", "ready", "failed", "stopped"])
def test_repeating_the_current_status_is_200_and_changes_nothing(client, token, status):
    deployment = DeploymentFactory(status="pending")
    first = post_status(client, token, deployment.pk, status=status, endpoint_url=URL, reason="r")
    assert first.status_code == 200
    events = deployment.events.count()
    second = post_status(client, token, deployment.pk, status=status, endpoint_url=URL, reason="r")
    assert second.status_code == 200
    assert second.json()["status"] == status
    assert deployment.events.count() == events
    assert second.json()["updated_at"] == first.json()["updated_at"]


def test_ready_at_a_new_endpoint_moves_the_deployment_to_it(client, token):
    deployment = DeploymentFactory(ready=True)
    response = post_status(client, token, deployment.pk, status="ready",
                           endpoint_url="https://gpu-9.example.test/v1")  # fmt: skip
    assert response.status_code == 200
    assert response.json()["endpoint_url"] == "https://gpu-9.example.test/v1"
    event = deployment.events.get(kind="ready")
    assert event.detail["previous"] == "http://127.0.0.1:9/model"


def test_a_restart_goes_back_to_provisioning_and_ready_again(client, token):
    deployment = DeploymentFactory(ready=True)
    assert post_status(client, token, deployment.pk, status="provisioning").json()["status"] == (
        "provisioning"
    )
    again = post_status(client, token, deployment.pk, status="ready", endpoint_url=URL)
    assert again.json()["status"] == "ready"
    assert again.json()["endpoint_url"] == URL


def test_failed_and_stopped_record_the_reason_and_who_reported_it(client, token):
    failed = DeploymentFactory(status="provisioning")
    body = post_status(client, token, failed.pk, status="failed", reason="GPU lost").json()
    assert body["status"] == "failed" and body["end_reason"] == "provisioner_failed"
    assert body["ended_at"] is not None
    event = failed.events.get(kind="failed")
    assert event.detail["reason"] == "GPU lost"
    assert event.actor == "provisioner:orchestrator"

    stopped = DeploymentFactory(ready=True)
    body = post_status(client, token, stopped.pk, status="stopped", reason="host drained").json()
    assert body["end_reason"] == "stopped_by_provisioner"
    assert stopped.events.get(kind="stopped").detail["reason"] == "host drained"
