"""Keys v2 in the services and the console API: expiry and limits at creation, PATCH, roll, the
three statuses and the cap that counts only active keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from buddy.core.errors import DeploymentNotReady, KeyExpired, KeyRevoked, ValidationFailed
from keys import services
from keys.models import ApiKey
from tests.console import assert_error
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db


def iso(dt) -> str:
    return dt.isoformat()


def soon(seconds: int = 3600):
    return timezone.now() + timedelta(seconds=seconds)


# --- services ---------------------------------------------------------------------------------


def test_a_key_is_created_with_its_expiry_and_limits(ready_deployment):
    expires = soon()
    key, _ = services.key_create(
        deployment_id=ready_deployment.pk,
        name="k",
        actor="t",
        expires_at=expires,
        rate_limit_rpm=30,
        rate_limit_tpm=1000,
    )
    key.refresh_from_db()
    assert (key.expires_at, key.rate_limit_rpm, key.rate_limit_tpm) == (expires, 30, 1000)
    assert key.status == "active" and key.rolled_to is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires_at", "past"),
        ("expires_at", "now"),
        ("rate_limit_rpm", 0),
        ("rate_limit_rpm", -1),
        ("rate_limit_rpm", "5"),
        ("rate_limit_rpm", 2.5),
        ("rate_limit_rpm", True),
        ("rate_limit_tpm", 0),
        ("rate_limit_tpm", 10**12),
    ],
)
def test_creation_refuses_an_expiry_not_in_the_future_or_a_limit_not_a_positive_integer(
    ready_deployment, field, value
):
    if value == "past":
        value = timezone.now() - timedelta(seconds=1)
    elif value == "now":
        value = timezone.now()
    with pytest.raises(ValidationFailed) as raised:
        services.key_create(
            deployment_id=ready_deployment.pk, name="k", actor="t", **{field: value}
        )
    assert field in (raised.value.fields or {})
    assert not ApiKey.objects.filter(deployment=ready_deployment).exists()


def test_status_is_active_expired_or_revoked_and_revoked_wins(ready_deployment):
    key, _ = services.key_create(
        deployment_id=ready_deployment.pk, name="k", actor="t", expires_at=soon(60)
    )
    assert key.status == "active"
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert ApiKey.objects.get(pk=key.pk).status == "expired"
        services.key_revoke(key_id=key.pk, actor="t")
        assert ApiKey.objects.get(pk=key.pk).status == "revoked"


@override_settings(BUDDY_MAX_KEYS_PER_DEPLOYMENT=2)
def test_only_active_keys_count_toward_the_cap(ready_deployment):
    services.key_create(deployment_id=ready_deployment.pk, name="a", actor="t")
    services.key_create(deployment_id=ready_deployment.pk, name="b", actor="t", expires_at=soon(5))
    with pytest.raises(services.KeyLimitReached):
        services.key_create(deployment_id=ready_deployment.pk, name="c", actor="t")
    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=False):
        services.key_create(deployment_id=ready_deployment.pk, name="c", actor="t")


def test_update_changes_what_was_sent_and_records_the_changed_fields(live_key, ready_deployment):
    key, _ = live_key
    expires = soon()
    updated = services.key_update(
        key_id=key.pk, actor="t", name="renamed", rate_limit_rpm=10, expires_at=expires
    )
    assert (updated.name, updated.rate_limit_rpm, updated.expires_at) == ("renamed", 10, expires)
    event = ready_deployment.events.get(kind="key_updated")
    assert event.detail["fields"] == ["expires_at", "name", "rate_limit_rpm"]
    assert event.detail["key_id"] == str(key.pk)
    # None clears; an unchanged value is no change.
    services.key_update(key_id=key.pk, actor="t", rate_limit_rpm=None, name="renamed")
    assert ApiKey.objects.get(pk=key.pk).rate_limit_rpm is None
    fields = [e.detail["fields"] for e in ready_deployment.events.filter(kind="key_updated")]
    assert sorted(fields) == [["expires_at", "name", "rate_limit_rpm"], ["rate_limit_rpm"]]
    services.key_update(key_id=key.pk, actor="t", name="renamed")
    assert ready_deployment.events.filter(kind="key_updated").count() == 2


def test_update_of_a_revoked_or_expired_key_is_refused(ready_deployment):
    revoked, _ = services.key_create(deployment_id=ready_deployment.pk, name="r", actor="t")
    services.key_revoke(key_id=revoked.pk, actor="t")
    with pytest.raises(KeyRevoked):
        services.key_update(key_id=revoked.pk, actor="t", name="x")
    expiring, _ = services.key_create(
        deployment_id=ready_deployment.pk, name="e", actor="t", expires_at=soon(5)
    )
    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=False):
        with pytest.raises(KeyExpired):
            services.key_update(key_id=expiring.pk, actor="t", expires_at=None)
    assert ApiKey.objects.get(pk=expiring.pk).expires_at is not None


def test_a_failed_update_changes_nothing(live_key):
    key, _ = live_key
    with pytest.raises(ValidationFailed):
        services.key_update(key_id=key.pk, actor="t", name="new", rate_limit_tpm=0)
    assert ApiKey.objects.get(pk=key.pk).name == "a"


def test_roll_makes_a_new_key_with_the_same_name_and_limits_and_a_grace_on_the_old(
    ready_deployment,
):
    old, _ = services.key_create(
        deployment_id=ready_deployment.pk, name="prod", actor="t", rate_limit_rpm=7
    )
    before = timezone.now()
    new, secret = services.key_roll(key_id=old.pk, actor="t", grace_seconds=600)
    assert secret.startswith("ob_sk_") and new.public_id in secret
    assert (new.name, new.rate_limit_rpm, new.deployment_id) == ("prod", 7, ready_deployment.pk)
    old.refresh_from_db()
    assert old.rolled_to_id == new.pk
    assert (
        before + timedelta(seconds=600) <= old.expires_at <= timezone.now() + timedelta(seconds=600)
    )
    assert old.status == "active"
    rolled = ready_deployment.events.get(kind="key_rolled")
    assert rolled.detail["rolled_to"] == str(new.pk) and rolled.detail["key_id"] == str(old.pk)
    created = ready_deployment.events.filter(kind="key_created")
    assert str(new.pk) in {e.detail["key_id"] for e in created}


def test_roll_with_grace_zero_stops_the_old_key_at_once_and_keeps_an_earlier_expiry(
    ready_deployment,
):
    old, _ = services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
    services.key_roll(key_id=old.pk, actor="t", grace_seconds=0)
    old.refresh_from_db()
    assert old.status == "expired"
    early = soon(30)
    other, _ = services.key_create(
        deployment_id=ready_deployment.pk, name="o", actor="t", expires_at=early
    )
    services.key_roll(key_id=other.pk, actor="t", grace_seconds=3600)
    other.refresh_from_db()
    assert other.expires_at == early  # min(its expiry, now + grace)


@override_settings(BUDDY_MAX_KEYS_PER_DEPLOYMENT=1)
def test_roll_is_allowed_at_the_cap(ready_deployment):
    key, _ = services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
    new, _ = services.key_roll(key_id=key.pk, actor="t")
    assert new.status == "active"


@pytest.mark.parametrize("status", ["pending", "provisioning"])
def test_roll_is_allowed_while_the_deployment_is_not_ready_yet(status):
    deployment = DeploymentFactory(ready=True)
    key, _ = services.key_create(deployment_id=deployment.pk, name="k", actor="t")
    type(deployment).objects.filter(pk=deployment.pk).update(status=status)
    new, _ = services.key_roll(key_id=key.pk, actor="t")
    assert new.deployment_id == deployment.pk


def test_roll_of_a_revoked_or_expired_key_is_refused(ready_deployment):
    key, _ = services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
    services.key_roll(key_id=key.pk, actor="t", grace_seconds=0)
    with pytest.raises(KeyExpired):
        services.key_roll(key_id=key.pk, actor="t")
    services.key_revoke(key_id=key.pk, actor="t")
    with pytest.raises(KeyRevoked):
        services.key_roll(key_id=key.pk, actor="t")
    assert ApiKey.objects.filter(deployment=ready_deployment).count() == 2


def test_roll_of_a_key_whose_deployment_was_deleted_is_refused(ready_deployment):
    key, _ = services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
    ApiKey.objects.filter(pk=key.pk).update(deployment=None)
    with pytest.raises(DeploymentNotReady):
        services.key_roll(key_id=key.pk, actor="t")


# --- the console API --------------------------------------------------------------------------


def test_create_with_expiry_and_limits_answers_them(api, ready_deployment):
    expires = soon()
    response = api.post(
        f"/api/v1/deployments/{ready_deployment.pk}/keys",
        {"name": "ci", "expires_at": iso(expires), "rate_limit_rpm": 30, "rate_limit_tpm": None},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["rate_limit_rpm"] == 30 and body["rate_limit_tpm"] is None
    assert body["expires_at"] is not None and body["rolled_to"] is None
    assert body["status"] == "active" and body["secret"]


@pytest.mark.parametrize(
    "extra",
    [
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"expires_at": "tomorrow"},
        {"rate_limit_rpm": 0},
        {"rate_limit_rpm": "30"},
        {"rate_limit_rpm": 1.5},
        {"rate_limit_tpm": -5},
        {"rate_limit_tpm": True},
    ],
)
def test_create_with_a_bad_expiry_or_limit_is_400_and_creates_nothing(api, ready_deployment, extra):
    response = api.post(
        f"/api/v1/deployments/{ready_deployment.pk}/keys", {"name": "x", **extra}, format="json"
    )
    error = assert_error(response, 400, "validation_error")
    assert set(error["fields"]) == set(extra)
    assert not ApiKey.objects.filter(deployment=ready_deployment).exists()


def test_patch_changes_the_fields_and_null_clears(api, live_key):
    key, _ = live_key
    url = f"/api/v1/keys/{key.pk}"
    response = api.patch(url, {"rate_limit_rpm": 5, "name": "n2"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["rate_limit_rpm"] == 5 and response.json()["name"] == "n2"
    response = api.patch(url, {"rate_limit_rpm": None}, format="json")
    assert response.json()["rate_limit_rpm"] is None
    assert_error(
        api.patch(url, {"expires_at": "2001-01-01T00:00:00Z"}, format="json"),
        400,
        "validation_error",
    )
    assert_error(api.patch(url, {"name": ""}, format="json"), 400, "validation_error")
    assert_error(
        api.generic("PATCH", url, "{nope", content_type="application/json"), 400, "invalid_json"
    )


def test_patch_of_a_revoked_or_expired_key_is_409(api, ready_deployment):
    revoked, _ = services.key_create(deployment_id=ready_deployment.pk, name="r", actor="t")
    services.key_revoke(key_id=revoked.pk, actor="t")
    assert_error(
        api.patch(f"/api/v1/keys/{revoked.pk}", {"name": "x"}, format="json"), 409, "key_revoked"
    )
    expired, _ = services.key_create(deployment_id=ready_deployment.pk, name="e", actor="t")
    services.key_roll(key_id=expired.pk, actor="t", grace_seconds=0)
    assert_error(
        api.patch(f"/api/v1/keys/{expired.pk}", {"name": "x"}, format="json"), 409, "key_expired"
    )


def test_patch_and_roll_of_someone_elses_key_are_404(other_api, live_key):
    key, _ = live_key
    assert_error(
        other_api.patch(f"/api/v1/keys/{key.pk}", {"name": "x"}, format="json"), 404, "not_found"
    )
    assert_error(other_api.post(f"/api/v1/keys/{key.pk}/roll"), 404, "not_found")


def test_roll_answers_201_with_the_new_secret_once_and_no_store(api, live_key):
    key, _ = live_key
    response = api.post(f"/api/v1/keys/{key.pk}/roll", {"grace_seconds": 0}, format="json")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["secret"].startswith("ob_sk_") and body["id"] != str(key.pk)
    old = api.get(f"/api/v1/keys/{key.pk}").json()
    assert old["rolled_to"] == body["id"] and old["status"] == "expired"
    assert "secret" not in api.get(f"/api/v1/keys/{body['id']}").json()
    # The default grace (3600 s) when no body is sent.
    response = api.post(f"/api/v1/keys/{body['id']}/roll")
    assert response.status_code == 201
    assert api.get(f"/api/v1/keys/{body['id']}").json()["status"] == "active"


@pytest.mark.parametrize("grace", [-1, 604801, "60", 1.5, None])
def test_roll_with_a_bad_grace_is_400_and_changes_nothing(api, live_key, grace):
    key, _ = live_key
    response = api.post(f"/api/v1/keys/{key.pk}/roll", {"grace_seconds": grace}, format="json")
    assert_error(response, 400, "validation_error")
    assert ApiKey.objects.filter(deployment=key.deployment).count() == 1


def test_roll_of_a_revoked_or_expired_key_is_409(api, live_key):
    key, _ = live_key
    api.post(f"/api/v1/keys/{key.pk}/roll", {"grace_seconds": 0}, format="json")
    assert_error(api.post(f"/api/v1/keys/{key.pk}/roll"), 409, "key_expired")
    api.post(f"/api/v1/keys/{key.pk}/revoke")
    assert_error(api.post(f"/api/v1/keys/{key.pk}/roll"), 409, "key_revoked")


def test_the_status_filter_takes_active_expired_and_revoked(api, ready_deployment):
    active, _ = services.key_create(deployment_id=ready_deployment.pk, name="a", actor="t")
    expired, _ = services.key_create(deployment_id=ready_deployment.pk, name="e", actor="t")
    services.key_roll(key_id=expired.pk, actor="t", grace_seconds=0)
    revoked, _ = services.key_create(deployment_id=ready_deployment.pk, name="r", actor="t")
    services.key_revoke(key_id=revoked.pk, actor="t")

    def ids(status: str) -> set[str]:
        return {k["id"] for k in api.get(f"/api/v1/keys?status={status}").json()["results"]}

    rolled_to = str(ApiKey.objects.get(pk=expired.pk).rolled_to_id)
    assert ids("active") == {str(active.pk), rolled_to}
    assert ids("expired") == {str(expired.pk)}
    assert ids("revoked") == {str(revoked.pk)}


def test_the_events_name_rolls_and_updates(api, live_key, ready_deployment):
    key, _ = live_key
    api.patch(f"/api/v1/keys/{key.pk}", {"rate_limit_tpm": 100}, format="json")
    api.post(f"/api/v1/keys/{key.pk}/roll")
    events = api.get(f"/api/v1/deployments/{ready_deployment.pk}/events").json()["results"]
    kinds = [e["kind"] for e in events]
    assert "key_updated" in kinds and "key_rolled" in kinds
    updated = next(e for e in events if e["kind"] == "key_updated")
    assert updated["detail"]["fields"] == ["rate_limit_tpm"]
