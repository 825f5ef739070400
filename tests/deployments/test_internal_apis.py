"""`POST /internal/v1/deployments/{id}/status`: the provisioner's callback."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
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


# --- what an endpoint may be (issue 13, item 11) --------------------------------------------------


@pytest.mark.parametrize(
    "endpoint_url",
    [
        "https://user:pw@gpu-3.example.test/v1",
        "https://user@gpu-3.example.test/v1",
        "https://@gpu-3.example.test/v1",
        "https://gpu-3.example.test/v1?api_key=x",
        "https://gpu-3.example.test/v1?",
        "https://gpu-3.example.test/v1#frag",
        "https://gpu-3.example.test/v1#",
        "http://internal.example.test@10.0.0.1/",
    ],
)
def test_an_endpoint_with_userinfo_query_or_fragment_is_refused(client, token, endpoint_url):
    deployment = DeploymentFactory(status="provisioning")
    response = post_status(client, token, deployment.pk, status="ready", endpoint_url=endpoint_url)
    assert code(response) == (400, "validation_error")
    assert "endpoint_url" in response.json()["error"]["fields"]
    after = Deployment.objects.get(pk=deployment.pk)
    assert after.status == "provisioning" and after.endpoint_url == ""


def _allowed(*cidrs):
    return tuple(ipaddress.ip_network(c) for c in cidrs)


@pytest.mark.parametrize(
    "endpoint_url",
    [
        "http://127.0.0.1:6379/",
        "http://localhost:8000/v1",  # resolved: 127.0.0.1 / ::1
        "http://2130706433/",  # 127.0.0.1 spelled as one number
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3.nip.invalid/",  # does not resolve
    ],
)
def test_an_endpoint_outside_the_allowed_networks_is_refused(client, token, settings, endpoint_url):
    settings.BUDDY_UPSTREAM_ALLOWED_NETWORKS = _allowed("10.0.0.0/8", "fd00::/8")
    deployment = DeploymentFactory(status="provisioning")
    response = post_status(client, token, deployment.pk, status="ready", endpoint_url=endpoint_url)
    assert code(response) == (400, "validation_error")
    assert "endpoint_url" in response.json()["error"]["fields"]
    assert Deployment.objects.get(pk=deployment.pk).status == "provisioning"


@pytest.mark.parametrize(
    ("cidrs", "endpoint_url"),
    [
        (("10.0.0.0/8",), "http://10.1.2.3:8000/v1"),
        (("fd00::/8",), "http://[fd00::7]:8000/v1"),
        (("127.0.0.0/8", "::1/128"), "http://localhost:8000/v1"),
        ((), "http://127.0.0.1:6379/"),  # no allow-list: any address
    ],
)
def test_an_endpoint_inside_the_allowed_networks_is_accepted(
    client, token, settings, cidrs, endpoint_url
):
    settings.BUDDY_UPSTREAM_ALLOWED_NETWORKS = _allowed(*cidrs)
    deployment = DeploymentFactory(status="provisioning")
    response = post_status(client, token, deployment.pk, status="ready", endpoint_url=endpoint_url)
    assert response.status_code == 200, response.json()
    assert response.json()["endpoint_url"] == endpoint_url.rstrip("/")


def test_a_bad_allowed_network_fails_at_start_up():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "buddy.settings",
             "BUDDY_UPSTREAM_ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "BUDDY_UPSTREAM_ALLOWED_NETWORKS" in result.stderr
