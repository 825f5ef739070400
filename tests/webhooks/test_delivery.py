"""Delivery by the real Celery worker to a local receiver (API.md v2, "Webhooks"): every event
type arrives once with a valid signature, retries, a worker killed mid-delivery, a rolled-back
change, and no secret anywhere the events go."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest
from django.db import transaction
from django.test import override_settings

from buddy.webhooks import services
from buddy.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from deployments import services as deployment_services
from keys import services as key_services
from keys.models import ApiKey
from tests.factories import DeploymentFactory
from tests.harness.wait import wait_until

pytestmark = pytest.mark.celery_worker


def register(user, url, events=("*",)):
    return services.webhook_endpoint_create(owner_id=user.pk, url=url, events=list(events))


def all_delivered(endpoint, count: int) -> bool:
    rows = list(WebhookDelivery.objects.filter(endpoint=endpoint))
    return len(rows) == count and all(r.status == DeliveryStatus.DELIVERED for r in rows)


def test_every_event_type_arrives_once_with_a_valid_signature_and_no_secret_anywhere(
    user, template, hook_receiver, celery_worker, caplog
):
    caplog.set_level(logging.DEBUG)
    endpoint, secret = register(user, hook_receiver.url)
    deployment = DeploymentFactory(owner=user, template=template)
    deployment_services.deployment_mark_ready(
        deployment_id=deployment.pk, endpoint_url="http://127.0.0.1:9/model", actor="t"
    )
    default = wait_until(
        lambda: ApiKey.objects.filter(deployment=deployment, is_default=True).first(),
        timeout=60,
        what="the worker's default key",
    )
    default_plaintext = key_services.key_reveal_default(key_id=default.pk, actor="t")
    key, plaintext = key_services.key_create(deployment_id=deployment.pk, name="k", actor="t")
    leaky, leaky_plaintext = key_services.key_create(
        deployment_id=deployment.pk, name="leaky", actor="t"
    )
    deployment_services.deployment_extend(deployment_id=deployment.pk, pack_hours=1, actor="t")
    with override_settings(BUDDY_PACK_ENDING_NOTICE_SECONDS=30 * 24 * 3600):
        assert deployment_services.deployment_notify_pack_ending() == 1
    key_services.key_revoke(key_id=key.pk, actor="t")
    assert key_services.key_revoke_leaked(
        key_id=leaky.pk, url="https://github.com/o/r/blob/main/.env", actor="t"
    )
    services.webhook_endpoint_ping(endpoint=endpoint)
    deployment_services.deployment_stop(deployment_id=deployment.pk, actor="t")

    expected = Counter(
        {
            "deployment.ready": 1,
            "key.created": 3,  # default, k, leaky
            "deployment.extended": 1,
            "deployment.pack_ending": 1,
            "key.revoked": 3,  # k (owner), leaky (leaked), default (the stop)
            "key.leaked": 1,
            "ping": 1,
            "deployment.ended": 1,
        }
    )
    total = sum(expected.values())
    wait_until(lambda: all_delivered(endpoint, total), timeout=90, what="every delivery")
    received = hook_receiver.received()
    assert Counter(r.body["type"] for r in received) == expected
    assert len({r.webhook_id for r in received}) == total  # each once
    for request in received:
        body = request.verified(secret)  # standardwebhooks checks the signature and timestamp
        assert body["id"] == request.webhook_id and body["id"].startswith("evt_")
        assert set(body) == {"id", "type", "created_at", "data"}
    by_type = {r.body["type"]: r.body["data"] for r in received}
    assert by_type["deployment.ended"]["deployment"]["status"] == "stopped"
    assert by_type["key.leaked"]["key"]["revoke_reason"] == "leaked"
    assert by_type["key.leaked"]["url"] == "https://github.com/o/r/blob/main/.env"
    assert by_type["key.leaked"]["deployment_id"] == str(deployment.pk)
    # Deliveries in event order (one endpoint, nothing retried): as the events were written.
    uids = list(WebhookEvent.objects.order_by("id").values_list("uid", flat=True))
    assert [r.webhook_id for r in received] == uids

    secrets = [secret, secret.removeprefix("whsec_"), plaintext, leaky_plaintext, default_plaintext]
    stored = [e.body for e in WebhookEvent.objects.all()] + [
        repr(list(WebhookDelivery.objects.values())),
    ]
    places = {
        "payloads": b"".join(r.raw for r in received).decode(),
        "headers": repr([r.headers for r in received]),
        "rows": "".join(stored),
        "worker log": celery_worker.log_path.read_text(errors="replace"),
        "this process's log": caplog.text,
    }
    for where, text in places.items():
        for value in secrets:
            assert value not in text, f"a secret in the {where}"


def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(user, hook_receiver):
    """The suite's worker runs with BUDDY_WEBHOOK_RETRY_SCHEDULE=1,1,1,1."""
    endpoint, secret = register(user, hook_receiver.url)
    hook_receiver.statuses = [500, 500, 500]
    services.webhook_endpoint_ping(endpoint=endpoint)
    wait_until(lambda: all_delivered(endpoint, 1), timeout=60, what="the fourth attempt")
    received = hook_receiver.received()
    assert len(received) == 4 and len({r.webhook_id for r in received}) == 1
    received[-1].verified(secret)
    [delivery] = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert delivery.attempts == 4 and delivery.last_status_code == 200


def test_a_worker_killed_mid_delivery_still_delivers_with_the_same_webhook_id(
    user, hook_receiver, celery_worker
):
    endpoint, secret = register(user, hook_receiver.url)
    hook_receiver.gate = threading.Event()
    services.webhook_endpoint_ping(endpoint=endpoint)
    wait_until(lambda: hook_receiver.received(), timeout=60, what="the first attempt to arrive")
    celery_worker.kill()  # mid-delivery: the receiver has the request and has not answered
    gate, hook_receiver.gate = hook_receiver.gate, None
    gate.set()
    [delivery] = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
    celery_worker.start_and_wait()
    wait_until(lambda: all_delivered(endpoint, 1), timeout=90, what="the redelivery")
    received = hook_receiver.received()
    assert len(received) >= 2
    assert {r.webhook_id for r in received} == {received[0].webhook_id}
    received[-1].verified(secret)


def test_a_rolled_back_change_sends_nothing(user, ready_deployment, hook_receiver):
    endpoint, _ = register(user, hook_receiver.url, events=["key.created"])
    with pytest.raises(RuntimeError), transaction.atomic():
        key_services.key_create(deployment_id=ready_deployment.pk, name="rolled-back", actor="t")
        raise RuntimeError("rolled back")
    key_services.key_create(deployment_id=ready_deployment.pk, name="committed", actor="t")
    services.webhook_endpoint_ping(endpoint=endpoint)  # after both, on the same endpoint
    wait_until(lambda: all_delivered(endpoint, 2), timeout=60, what="the committed change")
    received = hook_receiver.received()
    assert [r.body["type"] for r in received] == ["key.created", "ping"]
    assert received[0].body["data"]["key"]["name"] == "committed"


def test_a_hanging_endpoint_holds_back_neither_another_endpoint_nor_its_own_later_events(
    user, hook_receiver
):
    """One attempt in flight per endpoint: the hanging one holds one worker slot; the other
    endpoint's events go out meanwhile, and the hanging endpoint's next event waits its turn."""
    from tests.harness.receiver import receiver

    slow, _ = register(user, hook_receiver.url)
    hook_receiver.gate = threading.Event()
    with receiver() as fast_receiver:
        fast, fast_secret = register(user, fast_receiver.url)
        services.webhook_endpoint_ping(endpoint=slow)
        wait_until(lambda: hook_receiver.received(), timeout=60, what="the slow attempt")
        services.webhook_endpoint_ping(endpoint=slow)
        services.webhook_endpoint_ping(endpoint=fast)
        wait_until(lambda: all_delivered(fast, 1), timeout=60, what="the fast endpoint")
        fast_receiver.received()[0].verified(fast_secret)
        assert len(hook_receiver.received()) == 1  # its second event waits behind the first
        hook_receiver.gate.set()
        wait_until(lambda: all_delivered(slow, 2), timeout=60, what="the slow endpoint")
    assert len({r.webhook_id for r in hook_receiver.received()}) == 2
