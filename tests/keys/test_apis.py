from datetime import timedelta

import pytest
import time_machine
from django.test import override_settings
from rest_framework.test import APIClient

from keys import hashing, services, tokens
from keys.models import ApiKey
from tests.console import assert_error, token_client
from tests.factories import DeploymentFactory
from tests.harness.threads import run_concurrently

pytestmark = pytest.mark.django_db

KEY_FIELDS = {
    "id",
    "deployment",
    "name",
    "public_id",
    "masked",
    "is_default",
    "status",
    "created_at",
    "last_used_at",
    "revoked_at",
    "revoke_reason",
    "secret_available",
    "expires_at",
    "rate_limit_rpm",
    "rate_limit_tpm",
    "rolled_to",
    "usage_24h",
}
MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def default_key(ready_deployment):
    return services.key_create_default(deployment_id=ready_deployment.pk)


def create(api, deployment, name="ci"):
    return api.post(f"/api/v1/deployments/{deployment.pk}/keys", {"name": name}, format="json")


# --- create -----------------------------------------------------------------------------------


def test_creating_a_key_answers_201_with_its_secret_once_and_no_store(api, ready_deployment):
    response = create(api, ready_deployment, name="ci")
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == KEY_FIELDS | {"secret"}
    secret = body["secret"]
    parsed = tokens.parse(secret)
    assert body["public_id"] == parsed.public_id
    assert body["masked"] == f"ob_sk_{parsed.public_id}…"
    assert body["name"] == "ci"
    assert body["deployment"] == str(ready_deployment.pk)
    assert body["is_default"] is False
    assert body["status"] == "active"
    assert body["secret_available"] is False
    assert body["revoked_at"] is None and body["revoke_reason"] is None
    assert body["last_used_at"] is None
    key = ApiKey.objects.get(pk=body["id"])
    assert hashing.verify_key(key.secret_hash, secret)
    # Never again: not in the detail, nor in the lists.
    for url in (
        f"/api/v1/keys/{key.pk}",
        "/api/v1/keys",
        f"/api/v1/deployments/{ready_deployment.pk}/keys",
    ):
        later = api.get(url)
        assert later.status_code == 200
        assert secret not in later.content.decode()
        assert b'"secret"' not in later.content


@pytest.mark.parametrize("status", ["pending", "provisioning", "stopped", "failed", "terminated"])
def test_creating_a_key_on_a_deployment_that_is_not_ready_is_409(api, user, status):
    deployment = DeploymentFactory(owner=user, status=status)
    assert_error(create(api, deployment), 409, "deployment_not_ready")
    assert not ApiKey.objects.exists()


@override_settings(BUDDY_MAX_KEYS_PER_DEPLOYMENT=2)
def test_creating_a_key_beyond_the_limit_is_409_key_limit_reached(
    api, ready_deployment, default_key
):
    assert create(api, ready_deployment, name="one").status_code == 201
    assert_error(create(api, ready_deployment, name="two"), 409, "key_limit_reached")
    assert ApiKey.objects.count() == 2


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "   "}, {"name": None}, {"name": "x" * 101}, {"name": 5.5}, ["ci"]],
)
def test_creating_a_key_with_an_invalid_name_is_400(api, ready_deployment, body):
    response = api.post(f"/api/v1/deployments/{ready_deployment.pk}/keys", body, format="json")
    assert_error(response, 400, "validation_error")
    assert not ApiKey.objects.exists()


def test_creating_a_key_with_a_body_that_is_not_json_is_400_invalid_json(api, ready_deployment):
    response = api.generic(
        "POST",
        f"/api/v1/deployments/{ready_deployment.pk}/keys",
        b"name=ci",
        content_type="application/json",
    )
    assert_error(response, 400, "invalid_json")


# --- lists and detail -------------------------------------------------------------------------


def test_deployment_keys_are_a_page_newest_first(api, ready_deployment, default_key):
    newer = create(api, ready_deployment, name="newer").json()
    body = api.get(f"/api/v1/deployments/{ready_deployment.pk}/keys").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert [k["id"] for k in body["results"]] == [newer["id"], str(default_key.pk)]
    assert all(set(k) == KEY_FIELDS for k in body["results"])
    default = body["results"][1]
    assert default["is_default"] is True and default["secret_available"] is True
    assert default["name"] == "default"


def test_keys_across_deployments_filter_by_deployment_and_status(
    api, user, ready_deployment, default_key
):
    second = DeploymentFactory(owner=user, ready=True)
    other_key = create(api, second, name="second").json()
    revoked = create(api, ready_deployment, name="gone").json()
    api.post(f"/api/v1/keys/{revoked['id']}/revoke")

    def ids(query):
        response = api.get(f"/api/v1/keys{query}")
        assert response.status_code == 200
        return [k["id"] for k in response.json()["results"]]

    assert ids("") == [revoked["id"], other_key["id"], str(default_key.pk)]
    assert ids(f"?deployment={second.pk}") == [other_key["id"]]
    assert ids("?status=active") == [other_key["id"], str(default_key.pk)]
    assert ids("?status=revoked") == [revoked["id"]]
    assert ids(f"?deployment={ready_deployment.pk}&status=active") == [str(default_key.pk)]
    assert ids(f"?deployment={MISSING}") == []


@pytest.mark.parametrize(
    "query", ["?status=gone", "?status=", "?deployment=not-a-uuid", "?deployment="]
)
def test_keys_with_an_invalid_filter_are_400(api, query):
    assert_error(api.get(f"/api/v1/keys{query}"), 400, "validation_error")


def test_deployment_keys_with_an_invalid_status_filter_are_400(api, ready_deployment):
    response = api.get(f"/api/v1/deployments/{ready_deployment.pk}/keys?status=nope")
    assert_error(response, 400, "validation_error")


def test_key_detail(api, default_key):
    response = api.get(f"/api/v1/keys/{default_key.pk}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == KEY_FIELDS
    assert body["id"] == str(default_key.pk) and body["public_id"] == default_key.public_id


@pytest.mark.parametrize("key_id", [MISSING, "nope"])
def test_key_detail_of_an_unknown_id_is_404(api, key_id):
    assert_error(api.get(f"/api/v1/keys/{key_id}"), 404, "not_found")


# --- reveal -----------------------------------------------------------------------------------


def test_the_default_key_is_revealed_once_with_no_store(api, default_key):
    response = api.post(f"/api/v1/keys/{default_key.pk}/reveal")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert set(response.json()) == {"secret"}
    secret = response.json()["secret"]
    default_key.refresh_from_db()
    assert tokens.parse(secret).public_id == default_key.public_id
    assert hashing.verify_key(default_key.secret_hash, secret)
    assert default_key.sealed_secret is None
    assert api.get(f"/api/v1/keys/{default_key.pk}").json()["secret_available"] is False
    assert_error(api.post(f"/api/v1/keys/{default_key.pk}/reveal"), 410, "secret_already_shown")
    assert default_key.deployment.events.filter(kind="key_revealed").count() == 1


def test_revealing_after_the_window_is_410_secret_expired(api, default_key):
    with time_machine.travel(default_key.created_at + timedelta(hours=24, seconds=1)):
        assert_error(api.post(f"/api/v1/keys/{default_key.pk}/reveal"), 410, "secret_expired")
    default_key.refresh_from_db()
    assert default_key.sealed_secret is None


def test_revealing_a_revoked_key_is_409_key_revoked(api, default_key):
    api.post(f"/api/v1/keys/{default_key.pk}/revoke")
    assert_error(api.post(f"/api/v1/keys/{default_key.pk}/reveal"), 409, "key_revoked")


def test_revealing_a_key_that_is_not_the_default_is_410(api, ready_deployment):
    key = create(api, ready_deployment).json()
    assert_error(api.post(f"/api/v1/keys/{key['id']}/reveal"), 410, "secret_already_shown")


def test_a_reveal_with_a_body_that_is_not_json_reveals_nothing(api, default_key):
    response = api.generic(
        "POST", f"/api/v1/keys/{default_key.pk}/reveal", b"[", content_type="application/json"
    )
    assert_error(response, 400, "invalid_json")
    assert api.post(f"/api/v1/keys/{default_key.pk}/reveal").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_reveals_give_the_secret_to_exactly_one(user, ready_deployment):
    key = services.key_create_default(deployment_id=ready_deployment.pk)
    clients = [token_client(user), token_client(user)]

    def reveal(i):
        response = clients[i].post(f"/api/v1/keys/{key.pk}/reveal")
        return response.status_code, response.json()

    results = run_concurrently(reveal, 2)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 410], results
    refused = next(body for status, body in results if status == 410)
    assert refused["error"]["code"] == "secret_already_shown"


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_answers_200_with_the_revoked_key_and_is_idempotent(api, user, ready_deployment):
    key = create(api, ready_deployment).json()
    first = api.post(f"/api/v1/keys/{key['id']}/revoke")
    assert first.status_code == 200
    body = first.json()
    assert set(body) == KEY_FIELDS
    assert body["status"] == "revoked"
    assert body["revoke_reason"] == "revoked_by_owner"
    assert body["revoked_at"] is not None
    second = api.post(f"/api/v1/keys/{key['id']}/revoke")
    assert second.status_code == 200
    assert second.json() == body
    assert ready_deployment.events.filter(kind="key_revoked").count() == 1


# --- someone else's keys ----------------------------------------------------------------------


def test_someone_elses_keys_are_404_everywhere_and_unchanged(
    other_api, api, ready_deployment, default_key
):
    base = f"/api/v1/keys/{default_key.pk}"
    assert_error(other_api.get(base), 404, "not_found")
    assert_error(other_api.post(f"{base}/reveal"), 404, "not_found")
    assert_error(other_api.post(f"{base}/revoke"), 404, "not_found")
    deployment_keys = f"/api/v1/deployments/{ready_deployment.pk}/keys"
    assert_error(other_api.get(deployment_keys), 404, "not_found")
    assert_error(other_api.post(deployment_keys, {"name": "mine"}, format="json"), 404, "not_found")
    assert_error(other_api.post(deployment_keys, {"name": ""}, format="json"), 404, "not_found")
    assert_error(
        other_api.generic("POST", deployment_keys, b"{", content_type="application/json"),
        404,
        "not_found",
    )
    assert other_api.get("/api/v1/keys").json()["count"] == 0
    assert other_api.get(f"/api/v1/keys?deployment={ready_deployment.pk}").json()["count"] == 0
    default_key.refresh_from_db()
    assert default_key.revoked_at is None and default_key.sealed_secret is not None
    assert ApiKey.objects.count() == 1
    # ... and its owner still gets the secret.
    assert api.post(f"{base}/reveal").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/keys"),
        ("get", f"/api/v1/keys/{MISSING}"),
        ("post", f"/api/v1/keys/{MISSING}/reveal"),
        ("post", f"/api/v1/keys/{MISSING}/revoke"),
        ("get", f"/api/v1/deployments/{MISSING}/keys"),
        ("post", f"/api/v1/deployments/{MISSING}/keys"),
    ],
)
def test_key_endpoints_need_authentication(method, path):
    assert_error(getattr(APIClient(), method)(path), 401, "not_authenticated")
