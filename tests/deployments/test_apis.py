from datetime import timedelta

import pytest
import time_machine
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from django.test import override_settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from deployments import services
from deployments.models import Deployment, DeploymentEvent
from keys.services import key_create_default
from tests.console import assert_error, token_client
from tests.factories import DeploymentFactory, TemplateFactory

pytestmark = pytest.mark.django_db

DEPLOYMENT_FIELDS = {
    "id",
    "template",
    "model",
    "status",
    "endpoint_url",
    "pack_ends_at",
    "created_at",
    "updated_at",
    "ended_at",
    "end_reason",
    "default_key_id",
}
MISSING = "00000000-0000-4000-8000-000000000000"


# --- templates --------------------------------------------------------------------------------


def test_templates_lists_the_seeded_active_templates(api):
    TemplateFactory(slug="retired", name="Retired", model_id="old:1b", is_active=False)
    response = api.get("/api/v1/templates")
    assert response.status_code == 200
    by_slug = {t["slug"]: t for t in response.json()}
    assert by_slug["gemma4-26b"] == {
        "slug": "gemma4-26b",
        "name": "Gemma 4 26B A4B",
        "model_id": "gemma4:26b",
        "pack_hours_options": [1, 8, 24, 168],
    }
    assert by_slug["qwen3-6-27b"]["model_id"] == "qwen3.6:27b"
    assert "retired" not in by_slug


# --- create -----------------------------------------------------------------------------------


def test_deploying_a_template_answers_201_with_a_pending_deployment(api, user):
    before = timezone.now()
    response = api.post(
        "/api/v1/deployments", {"template": "gemma4-26b", "pack_hours": 8}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == DEPLOYMENT_FIELDS
    assert body["template"] == "gemma4-26b"
    assert body["model"] == "gemma4:26b"
    assert body["status"] == "pending"
    assert body["endpoint_url"] is None
    assert body["ended_at"] is None and body["end_reason"] is None
    assert body["default_key_id"] is None
    ends = parse_datetime(body["pack_ends_at"])
    assert before + timedelta(hours=8) <= ends <= timezone.now() + timedelta(hours=8)
    deployment = Deployment.objects.get(pk=body["id"])
    assert deployment.owner == user
    assert deployment.events.get().kind == "created"


def test_the_201_says_pending_even_when_the_provisioner_moves_on_within_the_request(
    api, monkeypatch
):
    """The embedded default runs tasks in-process as soon as the creation commits: the `local`
    provisioner has marked the deployment `provisioning` before the response is written. The 201
    is still the deployment as created."""
    from deployments import followups

    def provision_at_once(deployment_id: object) -> None:
        services.deployment_mark_provisioning(deployment_id=deployment_id, actor="t")

    monkeypatch.setattr(followups, "after_created", provision_at_once)
    response = api.post(
        "/api/v1/deployments", {"template": "gemma4-26b", "pack_hours": 8}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["status"] == "pending"
    assert Deployment.objects.get(pk=response.json()["id"]).status == "provisioning"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": "no-such-template", "pack_hours": 8}, "template"),
        ({"template": "gemma4-26b", "pack_hours": 5}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": 0}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": -8}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": True}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": 8.5}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": "eight"}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": "8"}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": 8.0}, "pack_hours"),
        ({"template": "gemma4-26b", "pack_hours": None}, "pack_hours"),
        ({"template": "gemma4-26b"}, "pack_hours"),
        ({"pack_hours": 8}, "template"),
        ({"template": ["gemma4-26b"], "pack_hours": 8}, "template"),
        ([1, 2], "non_field_errors"),
        ("gemma4-26b", "non_field_errors"),
    ],
)
def test_an_invalid_deployment_is_a_400_validation_error_that_creates_nothing(api, body, field):
    response = api.post("/api/v1/deployments", body, format="json")
    error = assert_error(response, 400, "validation_error")
    assert field in error["fields"]
    assert error["param"] in error["fields"]
    assert not Deployment.objects.exists()


def test_a_retired_template_cannot_be_deployed(api):
    TemplateFactory(slug="retired", name="Retired", model_id="old:1b", is_active=False)
    response = api.post(
        "/api/v1/deployments", {"template": "retired", "pack_hours": 8}, format="json"
    )
    assert_error(response, 400, "validation_error")
    assert not Deployment.objects.exists()


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_a_body_that_is_not_json_is_400_invalid_json(api, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    response = api.generic("POST", "/api/v1/deployments", b'{"template": "gemma4-26b",', **kwargs)
    assert_error(response, 400, "invalid_json")
    assert not Deployment.objects.exists()


def test_a_json_body_sent_as_a_form_type_is_still_read_as_json(api):
    response = api.generic(
        "POST",
        "/api/v1/deployments",
        b'{"template": "gemma4-26b", "pack_hours": 1}',
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 201


# --- list and detail --------------------------------------------------------------------------


def test_list_is_a_page_of_the_callers_deployments_newest_first(api, user, other_user):
    older = DeploymentFactory(owner=user)
    newer = DeploymentFactory(owner=user, ready=True)
    DeploymentFactory(owner=other_user)
    Deployment.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(hours=1))
    response = api.get("/api/v1/deployments")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    assert [d["id"] for d in body["results"]] == [str(newer.pk), str(older.pk)]
    assert all(set(d) == DEPLOYMENT_FIELDS for d in body["results"])


def test_list_pages_by_page_number(api, user):
    for _ in range(3):
        DeploymentFactory(owner=user)
    response = api.get("/api/v1/deployments?page=2")
    assert_error(response, 404, "not_found")  # 3 deployments fit on the first page of 50
    assert api.get("/api/v1/deployments?page=1").json()["count"] == 3


def test_list_filters_by_status(api, user):
    ready = DeploymentFactory(owner=user, ready=True)
    DeploymentFactory(owner=user)
    response = api.get("/api/v1/deployments?status=ready")
    assert [d["id"] for d in response.json()["results"]] == [str(ready.pk)]
    assert api.get("/api/v1/deployments?status=stopped").json()["count"] == 0


@pytest.mark.parametrize("status", ["running", "", "READY"])
def test_list_with_an_unknown_status_is_400_validation_error(api, status):
    error = assert_error(api.get(f"/api/v1/deployments?status={status}"), 400, "validation_error")
    assert "status" in error["fields"]


def test_detail_shows_the_deployment_with_its_default_key(api, user):
    deployment = DeploymentFactory(owner=user, ready=True)
    key = key_create_default(deployment_id=deployment.pk)
    response = api.get(f"/api/v1/deployments/{deployment.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(deployment.pk)
    assert body["status"] == "ready"
    assert body["endpoint_url"] == "http://127.0.0.1:9/model"
    assert body["default_key_id"] == str(key.pk)
    listed = api.get("/api/v1/deployments").json()["results"][0]
    assert listed == body


@pytest.mark.parametrize("deployment_id", [MISSING, "not-a-uuid", "123"])
def test_detail_of_an_unknown_id_is_404_not_found(api, deployment_id):
    assert_error(api.get(f"/api/v1/deployments/{deployment_id}"), 404, "not_found")


# --- stop -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "provisioning", "ready"])
def test_stop_answers_202_with_the_stopped_deployment(api, user, status):
    deployment = DeploymentFactory(owner=user, ready=status == "ready", status=status)
    response = api.post(f"/api/v1/deployments/{deployment.pk}/stop")
    assert response.status_code == 202
    body = response.json()
    assert set(body) == DEPLOYMENT_FIELDS
    assert body["id"] == str(deployment.pk)
    assert body["status"] == "stopped"
    assert body["end_reason"] == "stopped_by_owner"
    assert body["ended_at"] is not None
    event = DeploymentEvent.objects.get(deployment=deployment, kind="stopped")
    assert event.actor == f"user:{user.username}"


@pytest.mark.parametrize("status", ["stopped", "failed", "terminated"])
def test_stopping_an_ended_deployment_is_409_invalid_transition(api, user, status):
    deployment = DeploymentFactory(owner=user, status=status)
    assert_error(api.post(f"/api/v1/deployments/{deployment.pk}/stop"), 409, "invalid_transition")
    deployment.refresh_from_db()
    assert deployment.status == status


def test_stop_with_a_body_that_is_not_json_is_400_and_stops_nothing(api, user):
    deployment = DeploymentFactory(owner=user)
    response = api.generic(
        "POST", f"/api/v1/deployments/{deployment.pk}/stop", b"{", content_type="application/json"
    )
    assert_error(response, 400, "invalid_json")
    deployment.refresh_from_db()
    assert deployment.status == "pending"


# --- extend -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "provisioning", "ready"])
def test_extend_adds_the_pack_to_pack_ends_at_and_keeps_the_id(api, user, status):
    deployment = DeploymentFactory(owner=user, ready=status == "ready", status=status)
    response = api.post(
        f"/api/v1/deployments/{deployment.pk}/extend", {"pack_hours": 24}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(deployment.pk)
    assert parse_datetime(body["pack_ends_at"]) == deployment.pack_ends_at + timedelta(hours=24)
    assert body["status"] == status


@pytest.mark.parametrize("body", [{"pack_hours": 5}, {"pack_hours": "x"}, {}, [24], {"hours": 1}])
def test_extend_with_an_invalid_pack_is_400_and_changes_nothing(api, user, body):
    deployment = DeploymentFactory(owner=user)
    response = api.post(f"/api/v1/deployments/{deployment.pk}/extend", body, format="json")
    assert_error(response, 400, "validation_error")
    deployment.refresh_from_db()
    assert not deployment.events.filter(kind="extended").exists()


@pytest.mark.parametrize("status", ["stopped", "failed", "terminated"])
def test_extending_an_ended_deployment_is_409_invalid_transition(api, user, status):
    deployment = DeploymentFactory(owner=user, status=status)
    response = api.post(
        f"/api/v1/deployments/{deployment.pk}/extend", {"pack_hours": 8}, format="json"
    )
    assert_error(response, 409, "invalid_transition")


def test_extending_a_pack_that_has_run_out_is_409(api, user):
    deployment = DeploymentFactory(owner=user, ready=True)
    with time_machine.travel(deployment.pack_ends_at + timedelta(seconds=1)):
        response = api.post(
            f"/api/v1/deployments/{deployment.pk}/extend", {"pack_hours": 8}, format="json"
        )
    assert_error(response, 409, "invalid_transition")


# --- events -----------------------------------------------------------------------------------


def test_events_are_a_page_of_the_deployments_history_newest_first(api, user):
    response = api.post(
        "/api/v1/deployments", {"template": "gemma4-26b", "pack_hours": 1}, format="json"
    )
    deployment_id = response.json()["id"]
    services.deployment_mark_ready(
        deployment_id=deployment_id, endpoint_url="http://10.0.0.1:8000", actor="provisioner:t"
    )
    key_create_default(deployment_id=deployment_id)
    api.post(f"/api/v1/deployments/{deployment_id}/extend", {"pack_hours": 8}, format="json")
    api.post(f"/api/v1/deployments/{deployment_id}/stop")
    body = api.get(f"/api/v1/deployments/{deployment_id}/events").json()
    assert set(body) == {"count", "next", "previous", "results"}
    kinds = [e["kind"] for e in body["results"]]
    # The stop revoked the default key in its own transaction, after recording itself.
    assert kinds == ["key_revoked", "stopped", "extended", "key_created", "ready", "created"]
    for event in body["results"]:
        assert set(event) == {"at", "kind", "detail", "actor"}
        assert isinstance(event["detail"], dict)
    assert body["results"][-1]["actor"] == f"user:{user.username}"


# --- someone else's deployment ----------------------------------------------------------------


def test_someone_elses_deployment_is_404_everywhere_and_unchanged(other_api, user):
    deployment = DeploymentFactory(owner=user, ready=True)
    base = f"/api/v1/deployments/{deployment.pk}"
    assert_error(other_api.get(base), 404, "not_found")
    assert_error(other_api.get(f"{base}/events"), 404, "not_found")
    assert_error(other_api.post(f"{base}/stop"), 404, "not_found")
    assert_error(
        other_api.post(f"{base}/extend", {"pack_hours": 8}, format="json"), 404, "not_found"
    )
    assert other_api.get("/api/v1/deployments").json()["count"] == 0
    deployment_before = Deployment.objects.get(pk=deployment.pk)
    assert deployment_before.status == "ready"
    assert deployment_before.pack_ends_at == deployment.pack_ends_at
    assert not deployment.events.exists()


@pytest.mark.parametrize("body", [{"pack_hours": "nonsense"}, [1], b"{not json"])
def test_ownership_is_checked_before_the_body(other_api, user, body):
    deployment = DeploymentFactory(owner=user)
    for target in (str(deployment.pk), MISSING):
        url = f"/api/v1/deployments/{target}/extend"
        if isinstance(body, bytes):
            response = other_api.generic("POST", url, body, content_type="application/json")
        else:
            response = other_api.post(url, body, format="json")
        assert_error(response, 404, "not_found")


# --- authentication and protocol errors --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/templates"),
        ("get", "/api/v1/deployments"),
        ("post", "/api/v1/deployments"),
        ("get", f"/api/v1/deployments/{MISSING}"),
        ("post", f"/api/v1/deployments/{MISSING}/stop"),
        ("post", f"/api/v1/deployments/{MISSING}/extend"),
        ("get", f"/api/v1/deployments/{MISSING}/events"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Token wrong", "Token", "Bearer x", "Token a b"])
def test_without_a_valid_token_or_session_it_is_401(method, path, authorization):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = getattr(client, method)(path)
    error = assert_error(
        response,
        401,
        "authentication_failed"
        if authorization and authorization.startswith("Token")
        else "not_authenticated",
    )
    assert error["type"] == "authentication_error"
    assert response["WWW-Authenticate"] == "Token"


def test_an_expired_token_is_401(user):
    client = token_client(user)
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert_error(client.get("/api/v1/deployments"), 401, "authentication_failed")


def test_session_writes_need_the_csrf_token(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/v1/deployments").status_code == 200
    body = {"template": "gemma4-26b", "pack_hours": 1}
    error = assert_error(
        client.post("/api/v1/deployments", body, format="json"), 403, "csrf_failed"
    )
    assert error["type"] == "authentication_error"
    assert not Deployment.objects.exists()
    # What the frontend does: send back the csrftoken cookie's value in X-CSRFToken.
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    response = client.post(
        "/api/v1/deployments", body, format="json", HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret)
    )
    assert response.status_code == 201


def test_a_wrong_method_is_405_with_the_error_body_and_allow(api):
    response = api.delete("/api/v1/deployments")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"] and "POST" in response["Allow"]
    assert_error(api.put(f"/api/v1/deployments/{MISSING}/stop"), 405, "method_not_allowed")


def test_an_accept_header_without_json_still_gets_json(api):
    response = api.get("/api/v1/templates", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_is_a_500_with_the_error_body_and_no_trace(api, monkeypatch, debug):
    from deployments import selectors

    def explode(**kwargs):
        raise RuntimeError("boom: /secret/path in a stack frame")

    monkeypatch.setattr(selectors, "deployment_list_for_owner", explode)
    with override_settings(DEBUG=debug):
        response = api.get("/api/v1/deployments")
    error = assert_error(response, 500, "server_error")
    assert error["type"] == "server_error"
    assert b"boom" not in response.content and b"Traceback" not in response.content
