"""The admin's key page shows the v2 fields and edits them through `key_update` (the owner's
rules, event and cache guard)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from keys import services
from keys.models import ApiKey

pytestmark = pytest.mark.django_db


def change_url(key: ApiKey) -> str:
    return reverse("admin:keys_apikey_change", args=[key.pk])


def form(key: ApiKey, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": key.name,
        "expires_at_0": "",
        "expires_at_1": "",
        "rate_limit_rpm": "",
        "rate_limit_tpm": "",
    }
    data.update(changes)
    return data


def test_an_operator_edits_a_keys_limits_through_the_service(admin_client, live_key):
    key, _ = live_key
    page = admin_client.get(change_url(key))
    assert page.status_code == 200
    assert b"rate_limit_rpm" in page.content and key.secret_hash.encode() not in page.content
    response = admin_client.post(change_url(key), form(key, rate_limit_rpm="12", name="ops"))
    assert response.status_code == 302, response.content[:2000]
    key.refresh_from_db()
    assert (key.rate_limit_rpm, key.name) == (12, "ops")
    event = key.deployment.events.get(kind="key_updated")
    assert event.detail["fields"] == ["name", "rate_limit_rpm"]
    assert event.actor.startswith("operator:")


@pytest.mark.parametrize(
    "changes",
    [
        {"rate_limit_rpm": "0"},
        {"rate_limit_tpm": "-3"},
        {"expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"},
    ],
)
def test_an_invalid_edit_is_refused_on_the_form_and_changes_nothing(
    admin_client, live_key, changes
):
    key, _ = live_key
    response = admin_client.post(change_url(key), form(key, **changes))
    assert response.status_code == 200  # the form again, with its errors
    assert response.context["adminform"].form.errors
    key.refresh_from_db()
    assert (key.rate_limit_rpm, key.rate_limit_tpm, key.expires_at) == (None, None, None)
    assert not key.deployment.events.filter(kind="key_updated").exists()


def test_a_revoked_keys_page_is_read_only(admin_client, live_key):
    key, _ = live_key
    services.key_revoke(key_id=key.pk, actor="t")
    admin_client.post(change_url(key), form(key, rate_limit_rpm="5"))
    key.refresh_from_db()
    assert key.rate_limit_rpm is None
