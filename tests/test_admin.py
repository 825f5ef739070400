"""The operators' admin: actions go through the services; no page shows a hash or a secret."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.urls import reverse
from knox.models import AuthToken

from buddy.accounts import services as account_services
from buddy.accounts.models import ServiceToken
from buddy.accounts.selectors import service_token_authenticate
from deployments.models import DeploymentStatus, EndReason, EventKind
from keys import services as key_services
from keys.models import ApiKey, RevokeReason
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:deployments_deployment_changelist"
KEYS_CHANGELIST = "admin:keys_apikey_changelist"


@pytest.fixture
def keyed_deployment(ready_deployment):
    """A ready deployment with its default key (sealed secret) and two named keys."""
    key_services.key_create_default(deployment_id=ready_deployment.pk)
    for name in ("ci", "laptop"):
        key_services.key_create(deployment_id=ready_deployment.pk, name=name, actor="t")
    return ready_deployment


def _act(client, url_name, action, pks, **extra):
    return client.post(
        reverse(url_name),
        {"action": action, "_selected_action": [str(pk) for pk in pks], **extra},
        follow=True,
    )


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_stop_action_stops_through_the_service_revokes_keys_and_records_events(
    admin_client, keyed_deployment
):
    response = _act(admin_client, CHANGELIST, "stop", [keyed_deployment.pk])
    assert response.status_code == 200
    assert any("Stopped 1 deployment" in m for m in _messages(response))
    keyed_deployment.refresh_from_db()
    assert keyed_deployment.status == DeploymentStatus.STOPPED
    assert keyed_deployment.end_reason == EndReason.STOPPED_BY_OPERATOR
    keys = ApiKey.objects.filter(deployment=keyed_deployment)
    assert keys.count() == 3
    assert all(k.revoked_at is not None for k in keys)
    assert {k.revoke_reason for k in keys} == {RevokeReason.DEPLOYMENT_STOPPED}
    assert all(k.sealed_secret is None for k in keys)
    stopped = keyed_deployment.events.get(kind=EventKind.STOPPED)
    assert stopped.actor == "operator:admin"
    assert stopped.detail["end_reason"] == EndReason.STOPPED_BY_OPERATOR
    assert keyed_deployment.events.filter(kind=EventKind.KEY_REVOKED).count() == 3


def test_terminate_action_terminates_and_revokes(admin_client, keyed_deployment):
    _act(admin_client, CHANGELIST, "terminate", [keyed_deployment.pk])
    keyed_deployment.refresh_from_db()
    assert keyed_deployment.status == DeploymentStatus.TERMINATED
    assert keyed_deployment.end_reason == EndReason.TERMINATED_BY_OPERATOR
    assert not ApiKey.objects.filter(deployment=keyed_deployment, revoked_at__isnull=True)
    assert keyed_deployment.events.get(kind=EventKind.TERMINATED).actor == "operator:admin"


def test_stopping_an_ended_deployment_is_reported_as_skipped_and_changes_nothing(
    admin_client, ready_deployment
):
    ended = DeploymentFactory(status=DeploymentStatus.FAILED)
    response = _act(admin_client, CHANGELIST, "stop", [ready_deployment.pk, ended.pk])
    messages = _messages(response)
    assert any("Stopped 1 deployment" in m for m in messages)
    assert any("skipped" in m and "failed" in m for m in messages)
    ended.refresh_from_db()
    assert ended.status == DeploymentStatus.FAILED
    assert not ended.events.exists()


def test_extend_pack_asks_for_the_hours_then_extends_through_the_service(
    admin_client, ready_deployment
):
    before = ready_deployment.pack_ends_at
    page = _act(admin_client, CHANGELIST, "extend_pack", [ready_deployment.pk])
    assert page.status_code == 200
    assert b'name="pack_hours"' in page.content
    assert str(ready_deployment.pk).encode() in page.content
    ready_deployment.refresh_from_db()
    assert ready_deployment.pack_ends_at == before  # nothing changed by showing the form

    response = _act(
        admin_client, CHANGELIST, "extend_pack", [ready_deployment.pk], pack_hours="24", apply="1"
    )
    assert any("Extended the pack of 1 deployment" in m for m in _messages(response))
    ready_deployment.refresh_from_db()
    assert ready_deployment.pack_ends_at == before + timedelta(hours=24)
    event = ready_deployment.events.get(kind=EventKind.EXTENDED)
    assert event.actor == "operator:admin" and event.detail["pack_hours"] == 24


def test_extend_pack_with_hours_not_offered_shows_the_form_again(admin_client, ready_deployment):
    before = ready_deployment.pack_ends_at
    response = _act(
        admin_client, CHANGELIST, "extend_pack", [ready_deployment.pk], pack_hours="5", apply="1"
    )
    assert response.status_code == 200
    assert b'name="pack_hours"' in response.content
    assert b"errorlist" in response.content
    ready_deployment.refresh_from_db()
    assert ready_deployment.pack_ends_at == before


def test_extend_pack_of_an_ended_deployment_is_skipped(admin_client):
    stopped = DeploymentFactory(status=DeploymentStatus.STOPPED)
    response = _act(
        admin_client, CHANGELIST, "extend_pack", [stopped.pk], pack_hours="8", apply="1"
    )
    assert any("skipped" in m for m in _messages(response))
    assert not stopped.events.exists()


def test_revoke_key_action_asks_for_a_reason_then_revokes_through_the_service(
    admin_client, keyed_deployment
):
    key = ApiKey.objects.get(deployment=keyed_deployment, name="ci")
    page = _act(admin_client, KEYS_CHANGELIST, "revoke", [key.pk])
    assert page.status_code == 200
    for reason in RevokeReason.values:
        assert f'value="{reason}"'.encode() in page.content
    key.refresh_from_db()
    assert key.revoked_at is None

    response = _act(
        admin_client,
        KEYS_CHANGELIST,
        "revoke",
        [key.pk],
        reason=RevokeReason.REVOKED_BY_OPERATOR,
        apply="1",
    )
    assert any("Revoked 1 key" in m for m in _messages(response))
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoke_reason == RevokeReason.REVOKED_BY_OPERATOR
    event = keyed_deployment.events.get(kind=EventKind.KEY_REVOKED)
    assert event.actor == "operator:admin"
    assert event.detail == {
        "key_id": str(key.pk),
        "public_id": key.public_id,
        "reason": RevokeReason.REVOKED_BY_OPERATOR,
    }
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 2


def test_revoke_with_an_unknown_reason_revokes_nothing(admin_client, keyed_deployment):
    key = ApiKey.objects.get(deployment=keyed_deployment, name="ci")
    response = _act(admin_client, KEYS_CHANGELIST, "revoke", [key.pk], reason="because", apply="1")
    assert b"errorlist" in response.content
    key.refresh_from_db()
    assert key.revoked_at is None


def test_creating_a_service_token_shows_its_secret_once(admin_client):
    response = admin_client.post(
        reverse("admin:accounts_servicetoken_add"),
        {"name": "edge", "role": "proxy", "_save": "Save"},
    )
    # The secret is in the body of the response to the form itself, which no cache may keep.
    assert response.status_code == 200
    assert "no-store" in {d.strip() for d in response["Cache-Control"].split(",")}
    token = ServiceToken.objects.get()
    html = response.content.decode()
    assert "shown this once" in html
    secret = html.split('<code class="service-token-secret">')[1].split("</code>")[0]
    assert secret.startswith("ob_svc_")
    found = service_token_authenticate(authorization=f"Bearer {secret}")
    assert found is not None and found.id == token.pk and found.role == "proxy"
    assert secret not in token.digest
    # No cookie carries it: not set by this response, not held by the client (messages are a
    # signed but unencrypted cookie), so no later request sends it back.
    assert all(secret not in morsel.OutputString() for morsel in response.cookies.values())
    assert all(secret not in morsel.value for morsel in admin_client.cookies.values())
    assert not list(get_messages(response.wsgi_request))
    # Never again: not on the list, not on the token's own page, not on the admin's index.
    for url in [
        reverse("admin:accounts_servicetoken_changelist"),
        reverse("admin:accounts_servicetoken_change", args=[token.pk]),
        reverse("admin:index"),
    ]:
        page = admin_client.get(url)
        assert secret.encode() not in page.content
        assert token.digest.encode() not in page.content
        assert all(secret not in morsel.OutputString() for morsel in page.cookies.values())
    assert all(secret not in morsel.value for morsel in admin_client.cookies.values())


def test_revoke_service_token_action_uses_the_service(admin_client):
    token, secret = account_services.service_token_create(name="edge", role="proxy")
    _act(admin_client, "admin:accounts_servicetoken_changelist", "revoke", [token.pk])
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert service_token_authenticate(authorization=f"Bearer {secret}") is None


def test_deployment_pages_are_view_only(admin_client, ready_deployment):
    url = reverse("admin:deployments_deployment_change", args=[ready_deployment.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    response = admin_client.post(url, {"status": "stopped"})
    assert response.status_code == 403
    ready_deployment.refresh_from_db()
    assert ready_deployment.status == DeploymentStatus.READY
    assert admin_client.get(reverse("admin:deployments_deployment_add")).status_code == 403
    delete = reverse("admin:deployments_deployment_delete", args=[ready_deployment.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


def test_deployment_list_shows_key_count_and_searches_by_id_owner_and_endpoint(
    admin_client, keyed_deployment
):
    other = DeploymentFactory(ready=True, endpoint_url="http://10.0.0.9:8000/other")
    url = reverse(CHANGELIST)
    page = admin_client.get(url)
    rows = {str(d.pk): d for d in page.context["cl"].result_list}
    assert rows[str(keyed_deployment.pk)].active_keys == 3
    assert rows[str(other.pk)].active_keys == 0
    for term, expected in [
        (str(keyed_deployment.pk), keyed_deployment),
        (keyed_deployment.owner.username, keyed_deployment),
        ("10.0.0.9", other),
    ]:
        found = list(admin_client.get(url, {"q": term}).context["cl"].result_list)
        assert found == [expected], term
    for params in [
        {"status__exact": "ready"},
        {"template__id__exact": keyed_deployment.template_id},
    ]:
        assert admin_client.get(url, params).status_code == 200


def test_key_list_searches_by_public_id_and_masked_form(admin_client, keyed_deployment):
    key = ApiKey.objects.get(name="laptop")
    url = reverse(KEYS_CHANGELIST)
    for term in [key.public_id, key.masked]:
        assert list(admin_client.get(url, {"q": term}).context["cl"].result_list) == [key]
    for params in [{"status": "active"}, {"status": "revoked"}, {"is_default__exact": "1"}]:
        assert admin_client.get(url, params).status_code == 200


def test_templates_are_editable(admin_client, template):
    url = reverse("admin:deployments_template_change", args=[template.pk])
    response = admin_client.post(
        url,
        {
            "slug": template.slug,
            "name": "Renamed",
            "model_id": template.model_id,
            "pack_hours_options": "[1, 8]",
            "is_active": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.name == "Renamed" and template.pack_hours_options == [1, 8]
    bad = admin_client.post(
        url,
        {"slug": template.slug, "name": "x", "model_id": "m", "pack_hours_options": "[0]"},
    )
    assert bad.status_code == 200 and b"errorlist" in bad.content
    template.refresh_from_db()
    assert template.pack_hours_options == [1, 8]


def test_no_admin_page_shows_a_hash_or_a_secret(admin_client, keyed_deployment):
    """Every list, change, history, add and intermediate page of every registered model."""
    _named, plaintext = key_services.key_create(
        deployment_id=keyed_deployment.pk, name="shown-once", actor="t"
    )
    token, token_secret = account_services.service_token_create(name="edge", role="proxy")
    revoked, revoked_plaintext = key_services.key_create(
        deployment_id=keyed_deployment.pk, name="gone", actor="t"
    )
    key_services.key_revoke(key_id=revoked.pk, actor="t")
    default = ApiKey.objects.get(deployment=keyed_deployment, is_default=True)
    assert default.sealed_secret is not None
    default_plaintext = key_services.key_reveal_default(key_id=default.pk, actor="t")
    # A second deployment whose default key is still sealed (never revealed).
    sealed_deployment = DeploymentFactory(ready=True, owner=keyed_deployment.owner)
    sealed = key_services.key_create_default(deployment_id=sealed_deployment.pk)
    sealed_bytes = bytes(ApiKey.objects.get(pk=sealed.pk).sealed_secret)

    console_token, console_secret = AuthToken.objects.create(keyed_deployment.owner)
    forbidden = {plaintext, revoked_plaintext, default_plaintext, token_secret, token.digest}
    forbidden |= {console_secret, console_token.digest, console_token.token_key}
    forbidden |= {sealed_bytes.decode(), sealed_bytes.hex()}
    for key in ApiKey.objects.all():
        forbidden.add(key.secret_hash)
        forbidden.add(key.secret_hash.rsplit("$", 1)[-1])  # the digest part alone
    forbidden = {f for f in forbidden if f}

    urls = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        urls.append(reverse("admin:{}_{}_changelist".format(*info)) + "?q=ob_sk_")
        if model_admin.has_add_permission(_FakeRequest()):
            urls.append(reverse("admin:{}_{}_add".format(*info)))
        for obj in model._default_manager.all()[:50]:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
            urls.append(reverse("admin:{}_{}_history".format(*info), args=[obj.pk]))
    assert len(urls) > 30
    pages = [admin_client.get(url) for url in urls]
    # The intermediate pages of the actions that ask for input.
    pages.append(
        _act(admin_client, KEYS_CHANGELIST, "revoke", [k.pk for k in ApiKey.objects.all()])
    )
    pages.append(_act(admin_client, CHANGELIST, "extend_pack", [keyed_deployment.pk]))
    for url, page in zip([*urls, "revoke", "extend_pack"], pages, strict=True):
        assert page.status_code == 200, url
        html = page.content.decode()
        leaked = [secret for secret in forbidden if secret in html]
        assert not leaked, f"{url} shows {len(leaked)} secret(s)"
        assert "$argon2" not in html, url
        assert "sealed_secret" not in html and "secret_hash" not in html, url


class _FakeRequest:
    """Enough of a superuser request for `has_add_permission`."""

    class user:
        is_active = True
        is_staff = True
        is_superuser = True

        @staticmethod
        def has_perm(perm, obj=None):
            return True


def test_no_lookup_on_a_hash_or_digest_field_is_allowed_from_the_url(
    admin_client, keyed_deployment
):
    """`?secret_hash__startswith=...` would let whoever sees the list read a hash out a character
    at a time: Django answers such a lookup with 400 once the admin refuses it."""
    key = ApiKey.objects.get(name="laptop")
    token, _secret = account_services.service_token_create(name="edge", role="proxy")
    probes = [
        (KEYS_CHANGELIST, {"secret_hash__startswith": key.secret_hash[:20]}),
        (KEYS_CHANGELIST, {"secret_hash": key.secret_hash}),
        (KEYS_CHANGELIST, {"sealed_secret__isnull": "False"}),
        (KEYS_CHANGELIST, {"deployment__keys__secret_hash__startswith": "$argon2id$"}),
        ("admin:accounts_servicetoken_changelist", {"digest__startswith": token.digest[:4]}),
        ("admin:accounts_servicetoken_changelist", {"digest": token.digest}),
    ]
    for url_name, params in probes:
        assert admin_client.get(reverse(url_name), params).status_code == 400, params
    # Ordinary filters still work.
    ok = admin_client.get(reverse(KEYS_CHANGELIST), {"name": "laptop"})
    assert ok.status_code == 200 and list(ok.context["cl"].result_list) == [key]


def test_key_and_deployment_pages_show_their_usage(admin_client, keyed_deployment):
    from django.utils import timezone

    from buddy.usage.models import UsageHourly
    from buddy.usage.selectors import floor_hour

    key = keyed_deployment.keys.get(name="ci")
    hour = floor_hour(timezone.now())
    for k, requests in [(key, 3), (keyed_deployment.keys.get(name="laptop"), 4)]:
        UsageHourly.objects.create(
            key_id=k.pk, deployment_id=keyed_deployment.pk, hour=hour, requests=requests,
            prompt_tokens=10 * requests, completion_tokens=requests,
        )  # fmt: skip

    key_page = admin_client.get(reverse("admin:keys_apikey_change", args=[key.pk]))
    assert b"Last 24 h: 3 requests, 33 tokens (30 prompt, 3 completion)" in key_page.content
    deployment_page = admin_client.get(
        reverse("admin:deployments_deployment_change", args=[keyed_deployment.pk])
    )
    assert b"Last 24 h: 7 requests, 77 tokens" in deployment_page.content
    assert f"<td>{hour:%Y-%m-%d}</td><td>7</td>".encode() in deployment_page.content
