"""The lookup's v2 rows: `expired_api_key` judged against the clock on every hit, and
`rate_limit_exceeded` (the last row) counted in Redis, on the hit and the database paths; a PATCH
or roll is guarded like a revoke (no cached answer outlives its commit)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import redis
import time_machine
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from buddy.accounts.services import service_token_create
from buddy.core import redis as core_redis
from keys import services, tokens
from keys.lookup import cache as lookup_cache
from keys.lookup import ratelimit
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from keys.models import ApiKey

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_lookup_state"),
]
O = LookupOutcome
URL = "/internal/v1/auth/lookup"


def lookup(plaintext: str, model: object = None):
    return key_lookup(authorization=f"Bearer {plaintext}", model=model)


def outcome(plaintext: str, model: object = None) -> LookupOutcome:
    return lookup(plaintext, model).outcome


def redis_db() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def forget_entry(key: ApiKey) -> None:
    """Drop the key's cache entry (the next lookup takes the database path)."""
    redis_db().delete(lookup_cache.entry_name(key.public_id))


def make_key(deployment, **fields) -> tuple[ApiKey, str]:
    return services.key_create(deployment_id=deployment.pk, name="k", actor="t", **fields)


@pytest.fixture
def call(db):
    _token, secret = service_token_create(name="edge", role="proxy")
    client = Client()

    def call(plaintext: str, model: str | None = None):
        body = {"authorization": f"Bearer {plaintext}", "model": model}
        return client.post(
            URL,
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )

    return call


def code_of(response) -> str | None:
    return None if response.status_code == 200 else response.json()["error"]["code"]


# --- expiry --------------------------------------------------------------------------------------


def test_an_expired_key_answers_401_expired_api_key_from_the_cache_and_the_database(
    call, ready_deployment, argon2_calls
):
    key, plaintext = make_key(ready_deployment, expires_at=timezone.now() + timedelta(seconds=60))
    assert call(plaintext).status_code == 200  # fills the cache
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        response = call(plaintext)  # the warm entry, judged against the clock
        assert (response.status_code, code_of(response)) == (401, "expired_api_key")
        assert response.json()["error"]["type"] == "authentication_error"
        forget_entry(key)
        response = call(plaintext)
        assert (response.status_code, code_of(response)) == (401, "expired_api_key")
    assert len(argon2_calls) == 2


def test_a_revoked_and_expired_key_answers_revoked_api_key(call, ready_deployment):
    key, plaintext = make_key(ready_deployment, expires_at=timezone.now() + timedelta(seconds=5))
    services.key_revoke(key_id=key.pk, actor="t")
    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=False):
        assert code_of(call(plaintext)) == "revoked_api_key"
        assert code_of(call(plaintext, "qwen3.6:27b")) == "revoked_api_key"


def test_an_expired_key_with_a_wrong_model_is_401_not_400(call, ready_deployment):
    _, plaintext = make_key(ready_deployment, expires_at=timezone.now() + timedelta(seconds=5))
    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=False):
        assert code_of(call(plaintext, "qwen3.6:27b")) == "expired_api_key"


def test_a_patched_expiry_applies_on_the_next_lookup_with_a_warm_cache(
    call, live_key, argon2_calls
):
    key, plaintext = live_key
    assert call(plaintext).status_code == 200
    assert call(plaintext).status_code == 200  # warm
    services.key_update(key_id=key.pk, actor="t", expires_at=timezone.now() + timedelta(seconds=2))
    with time_machine.travel(timezone.now() + timedelta(seconds=3), tick=False):
        assert code_of(call(plaintext)) == "expired_api_key"
    assert len(argon2_calls) == 1  # the entry was refilled without a second verification


def test_a_patched_limit_applies_on_the_next_lookup_with_a_warm_cache(call, live_key):
    key, plaintext = live_key
    for _ in range(3):
        assert call(plaintext).status_code == 200
    services.key_update(key_id=key.pk, actor="t", rate_limit_rpm=2)
    assert [call(plaintext).status_code for _ in range(3)] == [200, 200, 429]
    services.key_update(key_id=key.pk, actor="t", rate_limit_rpm=None)
    assert call(plaintext).status_code == 200


def test_a_fill_from_a_read_before_a_patch_commits_never_answers_after_it(monkeypatch, live_key):
    key, plaintext = live_key
    real_fill = lookup_cache.fill
    filled: list[bool] = []

    def fill_after_patch(public_id, entry, *, live):
        monkeypatch.setattr(lookup_cache, "fill", real_fill)
        services.key_update(key_id=key.pk, actor="t", rate_limit_rpm=1)
        filled.append(real_fill(public_id, entry, live=live))
        return filled[-1]

    monkeypatch.setattr(lookup_cache, "fill", fill_after_patch)
    assert outcome(plaintext) is O.OK  # read the database before the PATCH committed
    assert filled == [False]  # the key's generation moved: the stale fill is refused
    assert outcome(plaintext) is O.OK  # the first request counted under the new limit
    assert outcome(plaintext) is O.RATE_LIMIT_EXCEEDED


def test_a_stale_entry_filled_just_before_a_patch_is_not_served_after_it(monkeypatch, live_key):
    key, plaintext = live_key
    real_fill = lookup_cache.fill

    def fill_then_patch(public_id, entry, *, live):
        monkeypatch.setattr(lookup_cache, "fill", real_fill)
        assert real_fill(public_id, entry, live=live)
        services.key_update(key_id=key.pk, actor="t", rate_limit_rpm=1)
        return True

    monkeypatch.setattr(lookup_cache, "fill", fill_then_patch)
    assert outcome(plaintext) is O.OK
    assert outcome(plaintext) is O.OK
    assert outcome(plaintext) is O.RATE_LIMIT_EXCEEDED


# --- roll ----------------------------------------------------------------------------------------


def test_a_roll_with_grace_zero_stops_the_old_key_at_once_even_when_cached(call, live_key):
    key, plaintext = live_key
    assert call(plaintext).status_code == 200
    _new, new_plaintext = services.key_roll(key_id=key.pk, actor="t", grace_seconds=0)
    assert code_of(call(plaintext)) == "expired_api_key"
    assert call(new_plaintext).status_code == 200


def test_a_rolled_key_works_through_its_grace_and_stops_when_it_passes(call, live_key):
    key, plaintext = live_key
    assert call(plaintext).status_code == 200
    _, new_plaintext = services.key_roll(key_id=key.pk, actor="t", grace_seconds=30)
    assert call(plaintext).status_code == 200
    assert call(plaintext).status_code == 200  # warm again
    with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=False):
        assert code_of(call(plaintext)) == "expired_api_key"
        assert call(new_plaintext).status_code == 200


def test_a_rolled_key_keeps_its_limits_on_the_new_key(call, ready_deployment):
    key, _ = make_key(ready_deployment, rate_limit_rpm=1)
    _, new_plaintext = services.key_roll(key_id=key.pk, actor="t")
    assert [call(new_plaintext).status_code for _ in range(2)] == [200, 429]


# --- limits --------------------------------------------------------------------------------------


def test_requests_over_the_rpm_limit_answer_429_with_retry_after(call, ready_deployment):
    _, plaintext = make_key(ready_deployment, rate_limit_rpm=3)
    answers = [call(plaintext) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0"]
    assert answers[0]["x-ratelimit-limit-requests"] == "3"
    response = call(plaintext)
    assert (response.status_code, code_of(response)) == (429, "rate_limit_exceeded")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response["Retry-After"].isdigit() and 1 <= int(response["Retry-After"]) <= 60


def test_model_mismatch_wins_over_rate_limit_exceeded_and_is_not_counted(call, ready_deployment):
    _, plaintext = make_key(ready_deployment, rate_limit_rpm=2)
    for _ in range(4):
        assert code_of(call(plaintext, "qwen3.6:27b")) == "model_mismatch"
    assert [call(plaintext, "gemma4:26b").status_code for _ in range(2)] == [200, 200]
    assert code_of(call(plaintext, "qwen3.6:27b")) == "model_mismatch"
    assert code_of(call(plaintext, "gemma4:26b")) == "rate_limit_exceeded"


def test_a_refused_lookup_is_not_counted(call, ready_deployment):
    key, plaintext = make_key(
        ready_deployment, rate_limit_rpm=1, expires_at=timezone.now() + timedelta(seconds=5)
    )
    assert call(plaintext).status_code == 200
    redis_db().delete(lookup_cache.rpm_window(key.public_id))
    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=False):
        for _ in range(3):
            assert code_of(call(plaintext)) == "expired_api_key"
    assert redis_db().zcard(lookup_cache.rpm_window(key.public_id)) == 0


def test_lookups_answered_from_the_database_count_in_the_same_window(call, ready_deployment):
    key, plaintext = make_key(ready_deployment, rate_limit_rpm=2)
    statuses = []
    for _ in range(3):
        forget_entry(key)
        statuses.append(call(plaintext).status_code)
    assert statuses == [200, 200, 429]
    assert call(plaintext).status_code == 429  # and the cached path sees the same count


def test_tokens_recorded_in_the_last_minute_count_against_the_tpm_limit(call, ready_deployment):
    key, plaintext = make_key(ready_deployment, rate_limit_tpm=100)
    response = call(plaintext)
    assert response["x-ratelimit-remaining-tokens"] == "100"
    assert "x-ratelimit-limit-requests" not in response
    ratelimit.tokens_spent(public_id=key.public_id, tokens=60)
    assert call(plaintext)["x-ratelimit-remaining-tokens"] == "40"
    ratelimit.tokens_spent(public_id=key.public_id, tokens=40)
    response = call(plaintext)
    assert (response.status_code, code_of(response)) == (429, "rate_limit_exceeded")
    assert 1 <= int(response["Retry-After"]) <= 60


def test_a_key_without_limits_leaves_no_count_in_redis(call, live_key):
    key, plaintext = live_key
    for _ in range(3):
        response = call(plaintext)
        assert response.status_code == 200
        assert "x-ratelimit-limit-requests" not in response
    r = redis_db()
    assert not r.exists(lookup_cache.rpm_window(key.public_id))
    assert not r.exists(lookup_cache.tpm_window(key.public_id))


def test_an_entry_of_the_old_layout_reads_as_a_miss(live_key, argon2_calls):
    key, plaintext = live_key
    assert outcome(plaintext) is O.OK
    entry = lookup_cache.Entry.decode(redis_db().get(lookup_cache.entry_name(key.public_id)))
    assert entry is not None
    old = f"{entry.deployment_id}|{entry.epoch}|" + json.dumps(
        [2, "0", entry.key_hmac, entry.key_id, False, "ready", "m", "http://x", None]
    )
    redis_db().set(lookup_cache.entry_name(key.public_id), old)
    assert outcome(plaintext) is O.OK
    assert len(argon2_calls) == 2  # verified again, then refilled in the new layout
    assert lookup_cache.Entry.decode(redis_db().get(lookup_cache.entry_name(key.public_id)))


def test_limits_are_not_enforced_while_redis_is_unreachable_and_that_is_logged_once(
    private_redis, ready_deployment, caplog
):
    with override_settings(REDIS_URL=private_redis.url):
        core_redis.client.cache_clear()
        try:
            _, plaintext = make_key(ready_deployment, rate_limit_rpm=1)
            assert outcome(plaintext) is O.OK
            assert outcome(plaintext) is O.RATE_LIMIT_EXCEEDED
            private_redis.kill()
            with caplog.at_level(logging.WARNING, logger="keys.lookup.ratelimit"):
                assert [outcome(plaintext) for _ in range(4)] == [O.OK] * 4
            warnings = [r for r in caplog.records if "not enforced" in r.getMessage()]
            assert len(warnings) == 1
        finally:
            core_redis.client.cache_clear()
            lookup_cache.breaker.reset()
            ratelimit.outage.ok()


def test_the_embedded_default_enforces_the_same_limits_in_process(ready_deployment):
    _, plaintext = make_key(ready_deployment, rate_limit_rpm=2)
    with override_settings(REDIS_URL="", EMBEDDED=True):
        core_redis.client.cache_clear()
        try:
            assert [outcome(plaintext) for _ in range(3)] == [O.OK, O.OK, O.RATE_LIMIT_EXCEEDED]
        finally:
            core_redis.client.cache_clear()


def test_a_wrong_secret_under_the_keys_public_id_spends_none_of_its_limit(call, ready_deployment):
    key, plaintext = make_key(ready_deployment, rate_limit_rpm=1)
    assert call(plaintext).status_code == 200  # cached
    redis_db().delete(lookup_cache.rpm_window(key.public_id))
    head = "ob_sk_" + key.public_id + "q" * 30
    forged = head + tokens.checksum(head)
    for _ in range(3):
        assert code_of(call(forged)) == "invalid_api_key"
    assert call(plaintext).status_code == 200
