"""The console's pages without a browser (Django's test client, real PostgreSQL): sign-in,
ownership (404), CSRF, the one response that shows a secret, and the API's refusals with the
API's messages."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from buddy.core import errors
from buddy.webhooks.models import WebhookEndpoint
from deployments.models import Deployment, DeploymentStatus
from keys import services as key_services
from keys.models import ApiKey
from tests.console_pages.browser import SECRET_RE
from tests.factories import DeploymentFactory, TemplateFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def browser(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def other_browser(other_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(other_user)
    return client


def _text(response) -> str:  # type: ignore[no-untyped-def]
    return html.unescape(response.content.decode())


def _secrets(response) -> list[str]:  # type: ignore[no-untyped-def]
    return SECRET_RE.findall(response.content.decode())


# --- signing in ----------------------------------------------------------------------------------


def test_the_root_goes_to_the_console_which_asks_to_sign_in_first(client):
    assert client.get("/").headers["Location"] == "/console/"
    response = client.get("/console/keys")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=/console/keys")


def test_a_user_signs_in_with_the_password_and_out_with_a_post(user):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/console/sign-in")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    wrong = client.post(
        "/console/sign-in",
        {"username": user.username, "password": "wrong", "csrfmiddlewaretoken": token[1]},
    )
    assert wrong.status_code == 200 and "Invalid username or password." in _text(wrong)
    signed_in = client.post(
        "/console/sign-in",
        {
            "username": user.username,
            "password": "correct horse battery staple",
            "csrfmiddlewaretoken": token[1],
        },
    )
    assert signed_in.headers["Location"] == "/console/instances"
    assert client.get("/console/instances").status_code == 200
    out = client.post(
        "/console/sign-out", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    )
    assert out.status_code == 302
    assert client.get("/console/instances").status_code == 302


def test_failed_sign_ins_count_with_the_apis_and_are_refused_past_the_limit(user, settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "console_token_failures_per_username": "3/hour"},
    }
    client = Client()
    wrong = {"username": user.username, "password": "wrong"}
    for _ in range(2):
        assert client.post("/console/sign-in", wrong).status_code == 200
    # The API's sign-in shares the counters: its failure is the third.
    api = client.post("/api/v1/auth/token", {**wrong}, content_type="application/json")
    assert api.status_code == 401
    right = {"username": user.username, "password": "correct horse battery staple"}
    refused = client.post("/console/sign-in", right)
    assert refused.status_code == 429
    assert errors.RATE_LIMITED.message in _text(refused)
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.get("/console/instances").status_code == 302  # not signed in


def test_every_page_is_never_cached(browser, ready_deployment):
    for path in ("/console/instances", "/console/keys", "/console/templates", "/console/webhooks"):
        response = browser.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response.headers["Cache-Control"], path


# --- other users' objects are 404 -----------------------------------------------------------------


def test_another_users_objects_are_404_and_left_alone(other_browser, ready_deployment, live_key):
    key, _secret = live_key
    default = key_services.key_create_default(deployment_id=ready_deployment.pk)
    assert default is not None
    endpoint, _ = _endpoint_of(ready_deployment.owner_id)
    deployment_id, key_id = ready_deployment.pk, key.pk
    gets = [
        f"/console/instances/{deployment_id}",
        f"/console/keys?instance={deployment_id}",
        f"/console/keys/{key_id}/edit",
        f"/console/webhooks/{endpoint.pk}",
        "/console/keys?instance=not-a-uuid",
    ]
    for path in gets:
        assert other_browser.get(path).status_code == 404, path
    posts = [
        (f"/console/instances/{deployment_id}/stop", {}),
        (f"/console/instances/{deployment_id}/extend", {"pack_hours": "1"}),
        (f"/console/instances/{deployment_id}/keys", {"name": "mine"}),
        (f"/console/keys/{default.pk}/reveal", {}),
        (f"/console/keys/{key_id}/roll", {}),
        (f"/console/keys/{key_id}/edit", {"name": "mine"}),
        (f"/console/keys/{key_id}/revoke", {}),
        (f"/console/webhooks/{endpoint.pk}/test", {}),
        (f"/console/webhooks/{endpoint.pk}/delete", {}),
    ]
    for path, data in posts:
        response = other_browser.post(path, data)
        assert response.status_code == 404, path
        assert not _secrets(response)
    ready_deployment.refresh_from_db()
    assert ready_deployment.status == DeploymentStatus.READY
    assert ApiKey.objects.filter(deployment=ready_deployment, revoked_at__isnull=True).count() == 2
    assert ApiKey.objects.get(pk=default.pk).sealed_secret is not None
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def _endpoint_of(owner_id: int):  # type: ignore[no-untyped-def]
    from buddy.webhooks.services import webhook_endpoint_create

    return webhook_endpoint_create(owner_id=owner_id, url="http://127.0.0.1:9/hook", events=["*"])


# --- CSRF ----------------------------------------------------------------------------------------


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    user, ready_deployment, live_key
):
    key, _ = live_key
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    for path in (
        f"/console/keys/{key.pk}/revoke",
        f"/console/instances/{ready_deployment.pk}/stop",
        f"/console/instances/{ready_deployment.pk}/keys",
        "/console/templates/deploy",
    ):
        response = client.post(path, {"name": "x", "template": "gemma4-26b", "pack_hours": "1"})
        assert response.status_code == 403, path
    key.refresh_from_db()
    ready_deployment.refresh_from_db()
    assert key.revoked_at is None
    assert ready_deployment.status == DeploymentStatus.READY
    assert ApiKey.objects.filter(deployment=ready_deployment).count() == 1
    assert Deployment.objects.count() == 1


# --- the one response that shows a secret ---------------------------------------------------------


def test_a_generated_key_is_shown_once_in_a_no_store_dialog(browser, ready_deployment):
    response = browser.post(
        f"/console/instances/{ready_deployment.pk}/keys",
        {"name": "ci", "rate_limit_rpm": "60", "rate_limit_tpm": "", "expires_at": ""},
        **HTMX,
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"].startswith("no-store")
    secrets = _secrets(response)
    assert len(secrets) == 1
    assert b"<html" not in response.content  # the dialog alone, swapped into the page
    key = ApiKey.objects.get(deployment=ready_deployment, name="ci")
    assert (key.rate_limit_rpm, key.rate_limit_tpm, key.expires_at) == (60, None, None)
    assert key_services.key_create  # the same service the API calls made it
    page = browser.get(f"/console/keys?instance={ready_deployment.pk}")
    assert secrets[0] not in page.content.decode()
    assert key.masked in _text(page)


def test_without_htmx_the_secret_is_a_page_of_its_own_and_also_no_store(browser, ready_deployment):
    response = browser.post(f"/console/instances/{ready_deployment.pk}/keys", {"name": "ci"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"].startswith("no-store")
    assert len(_secrets(response)) == 1 and b"<html" in response.content
    # Shown without JavaScript too: the dialog is open in the page's markup.
    assert re.search(r'<dialog class="secret"[^>]* open[ >]', response.content.decode())


def test_the_default_key_is_revealed_once_then_the_apis_410(browser, ready_deployment):
    default = key_services.key_create_default(deployment_id=ready_deployment.pk)
    assert default is not None
    first = browser.post(f"/console/keys/{default.pk}/reveal", **HTMX)
    assert first.status_code == 200 and first.headers["Cache-Control"].startswith("no-store")
    assert len(_secrets(first)) == 1
    again = browser.post(f"/console/keys/{default.pk}/reveal", **HTMX)
    assert again.status_code == 410
    assert errors.SECRET_ALREADY_SHOWN.message in _text(again)
    assert not _secrets(again)


def test_a_roll_shows_the_new_keys_secret_once(browser, ready_deployment, live_key):
    key, old_secret = live_key
    response = browser.post(f"/console/keys/{key.pk}/roll", {"grace_seconds": "0"}, **HTMX)
    assert response.status_code == 201 and response.headers["Cache-Control"].startswith("no-store")
    (secret,) = _secrets(response)
    assert secret != old_secret
    key.refresh_from_db()
    assert key.rolled_to_id is not None and key.status == "expired"


def test_a_webhooks_signing_secret_is_shown_once(browser):
    response = browser.post(
        "/console/webhooks/add", {"url": "http://127.0.0.1:9/hook", "events": ["*"]}, **HTMX
    )
    assert response.status_code == 201 and response.headers["Cache-Control"].startswith("no-store")
    (secret,) = _secrets(response)
    assert secret.startswith("whsec_")
    assert secret not in browser.get("/console/webhooks").content.decode()


# --- the API's rules and messages -----------------------------------------------------------------


def _api_message(api, method: str, path: str, body: dict | None = None) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    response = getattr(api, method)(path, body or {}, format="json")
    return response.status_code, response.json()["error"]["message"]


def test_a_key_for_an_instance_not_ready_is_refused_as_the_api_refuses_it(
    browser, api, user, template
):
    pending = DeploymentFactory(owner=user, template=template)
    status, message = _api_message(
        api, "post", f"/api/v1/deployments/{pending.pk}/keys", {"name": "a"}
    )
    response = browser.post(f"/console/instances/{pending.pk}/keys", {"name": "ci"}, **HTMX)
    assert (response.status_code, status) == (409, 409)
    assert message in _text(response)
    assert 'data-code="deployment_not_ready"' in response.content.decode()
    assert not ApiKey.objects.filter(deployment=pending).exists()


def test_bad_limits_are_the_apis_validation_messages_and_change_nothing(
    browser, api, ready_deployment
):
    _, api_body = (
        (
            r := api.post(
                f"/api/v1/deployments/{ready_deployment.pk}/keys",
                {"name": "a", "rate_limit_rpm": "many"},
                format="json",
            )
        ).status_code,
        r.json(),
    )
    response = browser.post(
        f"/console/instances/{ready_deployment.pk}/keys",
        {"name": "ci", "rate_limit_rpm": "many"},
        **HTMX,
    )
    assert response.status_code == 400
    for message in api_body["error"]["fields"]["rate_limit_rpm"]:
        assert message in _text(response)
    too_many = browser.post(
        f"/console/instances/{ready_deployment.pk}/keys",
        {"name": "ci", "rate_limit_rpm": "0"},
        **HTMX,
    )
    assert too_many.status_code == 400
    assert "Ensure this value is greater than or equal to 1." in _text(too_many)
    assert not ApiKey.objects.filter(deployment=ready_deployment).exists()


def test_editing_a_key_sets_and_clears_its_limits_and_shows_refusals(browser, live_key):
    key, _ = live_key
    path = f"/console/keys/{key.pk}/edit"
    assert browser.get(path).status_code == 200
    saved = browser.post(
        path, {"name": "renamed", "rate_limit_rpm": "30", "rate_limit_tpm": "", "expires_at": ""}
    )
    assert saved.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.rate_limit_rpm, key.rate_limit_tpm, key.expires_at) == (
        "renamed",
        30,
        None,
        None,
    )
    cleared = browser.post(path, {"name": "renamed", "rate_limit_rpm": ""})
    assert cleared.status_code == 302
    key.refresh_from_db()
    assert key.rate_limit_rpm is None
    refused = browser.post(path, {"name": "renamed", "expires_at": "2001-01-01T00:00"})
    assert refused.status_code == 400
    assert errors.VALIDATION_ERROR.message in _text(refused)
    key_services.key_revoke(key_id=key.pk, actor="t")
    revoked = browser.post(path, {"name": "again"})
    assert revoked.status_code == 409 and errors.KEY_REVOKED.message in _text(revoked)


def test_stopping_twice_shows_the_apis_refusal(browser, api, ready_deployment, live_key):
    first = browser.post(f"/console/instances/{ready_deployment.pk}/stop", follow=True)
    assert "its keys are revoked" in _text(first)
    assert not ApiKey.objects.filter(deployment=ready_deployment, revoked_at__isnull=True).exists()
    status, message = _api_message(api, "post", f"/api/v1/deployments/{ready_deployment.pk}/stop")
    assert status == 409
    again = browser.post(f"/console/instances/{ready_deployment.pk}/stop", follow=True)
    assert message in _text(again)


def test_deploying_takes_a_pack_of_the_template_and_refuses_others_like_the_api(browser, api, user):
    TemplateFactory()
    status, message = _api_message(
        api, "post", "/api/v1/deployments", {"template": "gemma4-26b", "pack_hours": 5}
    )
    assert status == 400
    refused = browser.post(
        "/console/templates/deploy", {"template": "gemma4-26b", "pack_hours": "5"}, follow=True
    )
    assert html.unescape(message) in _text(refused)
    assert not Deployment.objects.filter(owner=user).exists()
    browser.post("/console/templates/deploy", {"template": "gemma4-26b", "pack_hours": "8"})
    deployment = Deployment.objects.get(owner=user)
    assert deployment.status == DeploymentStatus.PENDING


def test_my_instances_polls_only_while_an_instance_is_on_its_way(browser, user, template):
    pending = DeploymentFactory(owner=user, template=template)
    rows = browser.get("/console/instances/rows")
    assert rows.status_code == 200 and 'hx-trigger="every 2s"' in rows.content.decode()
    pending.status = DeploymentStatus.READY
    pending.endpoint_url = "http://127.0.0.1:9/model"
    pending.save()
    assert "hx-trigger" not in browser.get("/console/instances/rows").content.decode()


def test_the_instance_page_shows_snippets_with_the_gateway_and_the_model(browser, ready_deployment):
    page = _text(browser.get(f"/console/instances/{ready_deployment.pk}"))
    assert 'base_url="http://testserver/v1"' in page
    assert f'model="{ready_deployment.model_id}"' in page
    assert "curl http://testserver/v1/chat/completions" in page
    assert "<svg" in page
