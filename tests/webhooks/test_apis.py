"""The console's webhook endpoints (API.md v2, "Webhooks")."""

from __future__ import annotations

import pytest
from django.test import override_settings

from buddy.webhooks.models import SUBSCRIBABLE_TYPES, WebhookDelivery, WebhookEndpoint
from tests.console import assert_error

pytestmark = pytest.mark.django_db
URL = "/api/v1/webhooks"


def create(api, url="http://127.0.0.1:9/hook", events=("*",)):
    return api.post(URL, {"url": url, "events": list(events)}, format="json")


def test_creating_an_endpoint_shows_its_secret_once_and_never_again(api):
    response = create(api, events=["deployment.ready", "key.created"])
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "id", "url", "events", "is_active", "created_at", "disabled_reason", "secret"
    }  # fmt: skip
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["events"] == ["deployment.ready", "key.created"]
    assert body["is_active"] is True and body["disabled_reason"] is None
    listed = api.get(URL).json()
    assert listed["count"] == 1 and "secret" not in listed["results"][0]
    detail = api.get(f"{URL}/{body['id']}")
    assert detail.status_code == 200 and "secret" not in detail.json()
    # Stored sealed: the column never holds the secret in clear.
    row = WebhookEndpoint.objects.get(pk=body["id"])
    assert body["secret"].encode() not in bytes(row.sealed_secret)
    assert body["secret"][6:].encode() not in bytes(row.sealed_secret)


def test_every_event_type_can_be_subscribed_or_all_with_a_star(api):
    assert create(api, events=list(SUBSCRIBABLE_TYPES)).status_code == 201
    assert create(api, events=["*"]).json()["events"] == ["*"]


@pytest.mark.parametrize(
    "events",
    [[], ["nope"], ["ping"], ["*", "key.created"], "key.created", [1], None],
)
def test_bad_event_lists_are_a_validation_error_and_change_nothing(api, events):
    response = api.post(URL, {"url": "http://127.0.0.1:9/hook", "events": events}, format="json")
    assert_error(response, 400, "validation_error")
    assert not WebhookEndpoint.objects.exists()


def test_a_user_holds_at_most_ten_endpoints(api, other_api):
    for _ in range(10):
        assert create(api).status_code == 201
    assert_error(create(api), 409, "webhook_limit_reached")
    assert create(other_api).status_code == 201  # per user


@override_settings(BUDDY_WEBHOOK_ALLOW_PRIVATE=False, DEBUG=False)
@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/hook",  # not https
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://0x7f.1/hook",
        "https://2130706433/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://user:pw@8.8.8.8/hook",
        "ftp://8.8.8.8/hook",
        "not a url",
        "https://no-such-host.invalid/hook",
    ],
)
def test_urls_that_are_not_https_or_reach_private_addresses_are_refused(api, url):
    error = assert_error(create(api, url=url), 400, "validation_error")
    assert "url" in error["fields"]
    assert not WebhookEndpoint.objects.exists()


@override_settings(BUDDY_WEBHOOK_ALLOW_PRIVATE=False, DEBUG=False)
def test_a_public_https_url_is_accepted_without_the_allowance(api):
    assert create(api, url="https://8.8.8.8/hook").status_code == 201


@override_settings(BUDDY_WEBHOOK_ALLOW_PRIVATE=False, DEBUG=True)
def test_debug_allows_private_and_http_urls(api):
    assert create(api, url="http://127.0.0.1:9/hook").status_code == 201


def test_another_users_endpoint_is_not_found_for_every_operation(api, other_api):
    endpoint_id = create(api).json()["id"]
    assert_error(other_api.get(f"{URL}/{endpoint_id}"), 404, "not_found")
    assert_error(other_api.delete(f"{URL}/{endpoint_id}"), 404, "not_found")
    assert_error(other_api.post(f"{URL}/{endpoint_id}/test"), 404, "not_found")
    assert_error(other_api.get(f"{URL}/{endpoint_id}/deliveries"), 404, "not_found")
    assert other_api.get(URL).json()["count"] == 0
    assert WebhookEndpoint.objects.filter(pk=endpoint_id).exists()


def test_delete_answers_204_and_the_endpoint_is_gone(api):
    endpoint_id = create(api).json()["id"]
    assert api.delete(f"{URL}/{endpoint_id}").status_code == 204
    assert_error(api.get(f"{URL}/{endpoint_id}"), 404, "not_found")


def test_test_answers_202_and_owes_a_ping_shown_in_deliveries(api):
    endpoint_id = create(api, events=["key.created"]).json()["id"]
    response = api.post(f"{URL}/{endpoint_id}/test")
    assert response.status_code == 202
    page = api.get(f"{URL}/{endpoint_id}/deliveries").json()
    assert page["count"] == 1
    [delivery] = page["results"]
    assert set(delivery) == {
        "id", "event_id", "type", "status", "attempts", "last_status_code", "last_attempt_at",
        "next_attempt_at",
    }  # fmt: skip
    assert delivery["type"] == "ping" and delivery["status"] == "pending"
    assert delivery["event_id"].startswith("evt_") and delivery["attempts"] == 0
    assert WebhookDelivery.objects.count() == 1


def test_the_endpoints_need_a_signed_in_user(client):
    assert client.get(URL).status_code in (401, 403)
