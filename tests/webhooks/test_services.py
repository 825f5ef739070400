"""The outbox and the delivery, in-process (the worker's tests are in test_delivery.py): what is
stored in the transaction of a change, what one delivery run does, retries, disabling, safety."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from buddy.webhooks import services
from buddy.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from deployments import services as deployment_services
from keys import services as key_services
from tests.factories import DeploymentFactory, UserFactory
from tests.harness.threads import run_concurrently

pytestmark = pytest.mark.django_db


def register(user, url, events=("*",)):
    return services.webhook_endpoint_create(owner_id=user.pk, url=url, events=list(events))


def deliveries(endpoint) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("event_id"))


# --- the outbox -------------------------------------------------------------------------------------


def test_a_change_stores_its_event_for_each_subscribed_endpoint_only(user, ready_deployment):
    everything, _ = register(user, "http://127.0.0.1:9/a")
    keys_only, _ = register(user, "http://127.0.0.1:9/b", events=["key.created"])
    extended_only, _ = register(user, "http://127.0.0.1:9/c", events=["deployment.extended"])
    stranger, _ = register(UserFactory(), "http://127.0.0.1:9/d")
    key, plaintext = key_services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
    [event] = WebhookEvent.objects.all()
    assert event.type == "key.created" and event.owner_id == user.pk
    assert {d.endpoint_id for d in WebhookDelivery.objects.all()} == {everything.pk, keys_only.pk}
    assert not deliveries(extended_only) and not deliveries(stranger)
    assert plaintext not in event.body and key.secret_hash not in event.body
    body = __import__("json").loads(event.body)
    assert body["id"] == event.uid and body["type"] == "key.created"
    assert body["data"]["key"]["id"] == str(key.pk)
    assert body["data"]["deployment_id"] == str(ready_deployment.pk)
    assert "secret" not in body["data"]["key"]


def test_a_rolled_back_change_stores_no_event(user, ready_deployment):
    register(user, "http://127.0.0.1:9/a")
    with pytest.raises(RuntimeError), transaction.atomic():
        key_services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
        deployment_services.deployment_extend(
            deployment_id=ready_deployment.pk, pack_hours=1, actor="t"
        )
        raise RuntimeError("the change fails after its events were written")
    assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()


def test_owners_without_endpoints_cost_no_event_rows(ready_deployment):
    key_services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
    deployment_services.deployment_stop(deployment_id=ready_deployment.pk, actor="t")
    assert not WebhookEvent.objects.exists()


def test_an_end_sends_deployment_ended_and_key_revoked_for_each_key(user, ready_deployment):
    register(user, "http://127.0.0.1:9/a")
    key, _ = key_services.key_create(deployment_id=ready_deployment.pk, name="k", actor="t")
    deployment_services.deployment_stop(deployment_id=ready_deployment.pk, actor="t")
    events = list(WebhookEvent.objects.order_by("id"))
    assert [e.type for e in events] == ["key.created", "deployment.ended", "key.revoked"]
    ended = __import__("json").loads(events[1].body)["data"]["deployment"]
    assert ended["status"] == "stopped" and ended["end_reason"] == "stopped_by_owner"
    revoked = __import__("json").loads(events[2].body)["data"]["key"]
    assert revoked["id"] == str(key.pk) and revoked["revoke_reason"] == "deployment_stopped"


# --- pack ending ------------------------------------------------------------------------------------


def test_pack_ending_is_sent_once_per_pack_end_and_again_after_an_extension(user, template):
    register(user, "http://127.0.0.1:9/a", events=["deployment.pack_ending"])
    deployment = DeploymentFactory(
        owner=user,
        template=template,
        ready=True,
        pack_ends_at=timezone.now() + timedelta(minutes=30),
    )
    far = DeploymentFactory(owner=user, template=template, ready=True)  # ends in 8 h
    assert deployment_services.deployment_notify_pack_ending() == 1
    assert deployment_services.deployment_notify_pack_ending() == 0
    deployment_services.deployment_extend(deployment_id=deployment.pk, pack_hours=1, actor="t")
    # The new end (in 1.5 h) is outside the default hour: nothing yet; with a wider notice, one more.
    assert deployment_services.deployment_notify_pack_ending() == 0
    with override_settings(BUDDY_PACK_ENDING_NOTICE_SECONDS=2 * 3600):
        assert deployment_services.deployment_notify_pack_ending() == 1
        assert deployment_services.deployment_notify_pack_ending() == 0
    notices = WebhookEvent.objects.filter(type="deployment.pack_ending")
    assert notices.count() == 2
    assert {__import__("json").loads(e.body)["data"]["deployment"]["id"] for e in notices} == {
        str(deployment.pk)
    }
    assert far.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_pack_ending_runs_send_one_notice(user, template):
    register(user, "http://127.0.0.1:9/a", events=["deployment.pack_ending"])
    DeploymentFactory(
        owner=user,
        template=template,
        ready=True,
        pack_ends_at=timezone.now() + timedelta(minutes=5),
    )
    results = run_concurrently(lambda _i: deployment_services.deployment_notify_pack_ending(), 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 1
    assert WebhookEvent.objects.filter(type="deployment.pack_ending").count() == 1


# --- one delivery run ------------------------------------------------------------------------------


def test_a_delivery_is_signed_and_recorded(user, ready_deployment, hook_receiver):
    endpoint, secret = register(user, hook_receiver.url)
    services.webhook_endpoint_ping(endpoint=endpoint)
    assert services.webhook_endpoint_deliver(endpoint_id=endpoint.pk) is None
    [request] = hook_receiver.received()
    body = request.verified(secret)
    assert body["type"] == "ping" and request.webhook_id == body["id"]
    assert request.headers["webhook-signature"].startswith("v1,")
    [delivery] = deliveries(endpoint)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.next_attempt_at is None


@override_settings(BUDDY_WEBHOOK_RETRY_SCHEDULE=(0, 0, 0))
def test_failed_attempts_follow_the_schedule_then_fail(user, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url)
    hook_receiver.statuses = [500] * 10
    services.webhook_endpoint_ping(endpoint=endpoint)
    services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    [delivery] = deliveries(endpoint)
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 4
    assert delivery.last_status_code == 500 and len(hook_receiver.received()) == 4
    assert len({r.webhook_id for r in hook_receiver.received()}) == 1


@override_settings(BUDDY_WEBHOOK_RETRY_SCHEDULE=(300, 600))
def test_a_failure_is_retried_after_the_first_delay_of_the_schedule(user, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url)
    hook_receiver.statuses = [503]
    services.webhook_endpoint_ping(endpoint=endpoint)
    before = timezone.now()
    due_in = services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    [delivery] = deliveries(endpoint)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert before + timedelta(seconds=299) < delivery.next_attempt_at
    assert delivery.next_attempt_at < timezone.now() + timedelta(seconds=301)
    assert due_in is not None and 290 < due_in <= 300
    assert services.webhook_redrive() == 0  # not due yet
    assert services.webhook_redrive(now=timezone.now() + timedelta(seconds=301)) == 1


def test_redirects_are_not_followed(user, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url)
    hook_receiver.statuses = [302]
    hook_receiver.extra_headers = {"Location": hook_receiver.url + "/elsewhere"}
    services.webhook_endpoint_ping(endpoint=endpoint)
    services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    assert [r.path for r in hook_receiver.received()] == ["/hook"]
    [delivery] = deliveries(endpoint)
    assert delivery.last_status_code == 302 and delivery.status == DeliveryStatus.PENDING


def test_an_endpoint_failing_for_three_days_is_disabled_with_a_reason(user, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url)
    hook_receiver.statuses = [500, 500]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=3, minutes=1)
    )
    services.webhook_endpoint_ping(endpoint=endpoint)
    services.webhook_endpoint_ping(endpoint=endpoint)
    services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.is_active is False and "failed" in endpoint.disabled_reason
    assert len(hook_receiver.received()) == 1  # nothing more is tried
    assert {d.status for d in deliveries(endpoint)} == {DeliveryStatus.FAILED}
    # Disabled endpoints are owed nothing new.
    services.webhook_events_enqueue(
        events=[services.NewEvent(owner_id=user.pk, type="key.created", data={})]
    )
    assert len(deliveries(endpoint)) == 2


def test_a_success_resets_the_failure_clock(user, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=2)
    )
    services.webhook_endpoint_ping(endpoint=endpoint)
    services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.is_active


def test_the_url_is_checked_again_at_every_delivery(user, hook_receiver):
    """Registered while private destinations were allowed (or DNS said otherwise): refused at
    delivery time without connecting, and recorded as a failed attempt."""
    endpoint, _ = register(user, hook_receiver.url)
    services.webhook_endpoint_ping(endpoint=endpoint)
    with override_settings(BUDDY_WEBHOOK_ALLOW_PRIVATE=False, DEBUG=False):
        services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    assert hook_receiver.received() == []
    [delivery] = deliveries(endpoint)
    assert delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.last_error.startswith("refused:")


def test_deliveries_go_out_in_event_order(user, ready_deployment, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url)
    for name in ("a", "b", "c"):
        key_services.key_create(deployment_id=ready_deployment.pk, name=name, actor="t")
    services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    names = [r.body["data"]["key"]["name"] for r in hook_receiver.received()]
    assert names == ["a", "b", "c"]


def test_an_unanswered_attempt_times_out(user, hook_receiver):
    import threading

    endpoint, _ = register(user, hook_receiver.url)
    hook_receiver.gate = threading.Event()
    services.webhook_endpoint_ping(endpoint=endpoint)
    with override_settings(BUDDY_WEBHOOK_TIMEOUT_SECONDS=0.5):
        services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    hook_receiver.gate.set()
    [delivery] = deliveries(endpoint)
    assert delivery.attempts == 1 and delivery.last_status_code is None
    assert "no answer" in delivery.last_error


def test_old_events_that_owe_nothing_are_pruned_with_their_deliveries(user, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url)
    delivered = services.webhook_endpoint_ping(endpoint=endpoint)
    services.webhook_endpoint_deliver(endpoint_id=endpoint.pk)
    still_owed = services.webhook_endpoint_ping(endpoint=endpoint)  # pending, old
    recent = services.webhook_endpoint_ping(endpoint=endpoint)
    old = timezone.now() - timedelta(days=31)
    WebhookEvent.objects.filter(pk__in=[delivered.pk, still_owed.pk]).update(created_at=old)
    assert services.webhook_events_prune() == 1
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {still_owed.pk, recent.pk}
    assert not WebhookDelivery.objects.filter(event_id=delivered.pk).exists()
