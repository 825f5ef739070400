"""`key_lookup_async` (the gateway's lookup) gives `key_lookup`'s answers, a hit in one Redis round
trip from the event loop with no SQL and no argon2, and the internal endpoint refuses deep JSON."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from django.conf import settings
from django.test import Client

from buddy.accounts.services import service_token_create
from deployments import services as deployment_services
from keys import services, tokens
from keys.lookup import cache as lookup_cache
from keys.lookup.aio import key_lookup_async
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_lookup_state"),
]
O = LookupOutcome


def both(authorization: object, model: object = None):  # type: ignore[no-untyped-def]
    """The sync and the async lookup of the same key, one after the other."""
    sync = key_lookup(authorization=authorization, model=model)
    async_ = asyncio.run(key_lookup_async(authorization=authorization, model=model))
    return sync, async_


def test_the_async_lookup_answers_every_row_as_the_sync_one(live_key, ready_deployment):
    _, plaintext = live_key
    revoked_key, revoked = services.key_create(
        deployment_id=ready_deployment.pk, name="r", actor="t"
    )
    services.key_revoke(key_id=revoked_key.pk, actor="t")
    cases = [
        (None, None),
        ("Basic abc", None),
        ("Bearer nope", None),
        (f"Bearer {tokens.generate().plaintext}", None),  # unknown public id
        (f"Bearer {plaintext}", None),
        (f"Bearer {plaintext}", ready_deployment.model_id),
        (f"Bearer {plaintext}", "qwen3.6:27b"),
        (f"Bearer {revoked}", "qwen3.6:27b"),
    ]
    for authorization, model in cases * 2:  # cold, then warm
        sync, async_ = both(authorization, model)
        assert (sync.outcome, sync.snapshot) == (async_.outcome, async_.snapshot), authorization


def test_an_async_hit_does_no_sql_and_no_argon2(live_key, argon2_calls, django_assert_num_queries):
    _, plaintext = live_key
    assert key_lookup(authorization=f"Bearer {plaintext}").outcome is O.OK
    assert len(argon2_calls) == 1
    with django_assert_num_queries(0):
        for model in (None, "gemma4:26b", "qwen3.6:27b"):
            asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}", model=model))
    assert len(argon2_calls) == 1


def test_an_async_miss_verifies_and_fills_the_cache(live_key, argon2_calls):
    key, plaintext = live_key
    result = asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}"))
    assert result.outcome is O.OK
    assert result.snapshot is not None and result.snapshot.key_id == str(key.pk)
    assert len(argon2_calls) == 1
    r = redis.Redis.from_url(settings.REDIS_URL)
    assert r.exists(lookup_cache.entry_name(key.public_id))


def test_a_revoke_is_seen_by_the_async_hit_path_at_commit(live_key):
    key, plaintext = live_key
    assert asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}")).ok
    services.key_revoke(key_id=key.pk, actor="t")
    result = asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}"))
    assert result.outcome is O.REVOKED_API_KEY


def test_a_stopped_deployment_is_seen_by_the_async_hit_path(live_key, ready_deployment):
    _, plaintext = live_key
    assert asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}")).ok
    deployment_services.deployment_stop(deployment_id=ready_deployment.pk, actor="t")
    result = asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}"))
    assert not result.ok
    assert result.outcome in {O.DEPLOYMENT_STOPPED, O.REVOKED_API_KEY}


def test_the_async_read_reloads_its_script_after_a_script_flush(live_key):
    _, plaintext = live_key
    assert asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}")).ok
    redis.Redis.from_url(settings.REDIS_URL).script_flush()
    assert asyncio.run(key_lookup_async(authorization=f"Bearer {plaintext}")).ok
    assert not lookup_cache.breaker.is_open


def test_the_lookup_endpoint_answers_deep_json_with_400_invalid_json():
    _, secret = service_token_create(name="edge", role="proxy")
    # Under the 64 KiB body cap (a 413 comes first), and far deeper than the parser recurses.
    for raw in ("[" * 60_000, '{"a":' * 12_000):
        response = Client().post(
            "/internal/v1/auth/lookup",
            data=raw,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )
        assert response.status_code == 400
        assert json.loads(response.content)["error"]["code"] == "invalid_json"
