"""The cached lookup: hits cost no SQL and no argon2, and no cached answer outlives a revocation,
a deployment's end or a change of its state, even when a fill races the change's commit."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import fakeredis
import pytest
import redis
import time_machine
from django.conf import settings
from django.test import Client, override_settings

from buddy.accounts.selectors import service_token_authenticate_cached
from buddy.accounts.services import service_token_create, service_token_revoke
from buddy.core import redis as core_redis
from deployments import services as deployment_services
from keys import hashing, services, tasks, tokens
from keys.lookup import cache as lookup_cache
from keys.lookup import limits, usage
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from keys.models import ApiKey
from tests.harness.wait import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_lookup_state"),
]
O = LookupOutcome


def lookup(plaintext: str, model: object = None):
    return key_lookup(authorization=f"Bearer {plaintext}", model=model)


def outcome(plaintext: str, model: object = None) -> LookupOutcome:
    return lookup(plaintext, model).outcome


# --- the fast path -------------------------------------------------------------------------------


def test_a_cache_hit_does_no_sql_and_no_argon2(live_key, argon2_calls, django_assert_num_queries):
    _, plaintext = live_key
    assert outcome(plaintext) is O.OK
    assert len(argon2_calls) == 1
    with django_assert_num_queries(0):
        for model in (None, "gemma4:26b", "qwen3.6:27b"):
            lookup(plaintext, model)
    assert len(argon2_calls) == 1


def test_a_cache_hit_over_http_does_no_sql_and_no_argon2_including_the_service_token(
    live_key, argon2_calls, django_assert_num_queries
):
    _, secret = service_token_create(name="edge", role="proxy")
    client = Client()

    def call():
        return client.post(
            "/internal/v1/auth/lookup",
            data=json.dumps({"authorization": f"Bearer {live_key[1]}", "model": "gemma4:26b"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )

    assert call().status_code == 200
    with django_assert_num_queries(0):
        for _ in range(3):
            assert call().status_code == 200
    assert len(argon2_calls) == 1


def test_malformed_bad_checksum_and_unknown_keys_cost_no_argon2(live_key, argon2_calls):
    _, plaintext = live_key
    bad_checksum = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    for candidate in ("nope", plaintext + "x", bad_checksum, tokens.generate().plaintext):
        assert outcome(candidate) is O.INVALID_API_KEY
    assert argon2_calls == []


def test_the_cache_holds_no_plaintext_and_a_forged_secret_cannot_match_it(live_key, argon2_calls):
    key, plaintext = live_key
    assert outcome(plaintext) is O.OK
    r = redis.Redis.from_url(settings.REDIS_URL)
    stored = b"".join(r.get(k) or b"" for k in r.keys("buddy:lookup:e:*"))
    assert key.public_id.encode() not in stored or plaintext.encode() not in stored
    assert plaintext[len("ob_sk_") :].encode() not in stored
    head = "ob_sk_" + key.public_id + "q" * 30
    assert outcome(head + tokens.checksum(head)) is O.INVALID_API_KEY
    assert len(argon2_calls) == 2  # the forged key had to be verified: the entry did not match


def test_a_changed_pepper_makes_old_entries_unusable(live_key, argon2_calls):
    _, plaintext = live_key
    assert outcome(plaintext) is O.OK
    with override_settings(BUDDY_LOOKUP_CACHE_PEPPER="another-pepper"):
        assert outcome(plaintext) is O.OK
    assert len(argon2_calls) == 2


def test_an_ended_pack_answers_409_from_the_cache_at_once(
    live_key, ready_deployment, django_assert_num_queries
):
    _, plaintext = live_key
    assert outcome(plaintext) is O.OK
    with time_machine.travel(ready_deployment.pack_ends_at + timedelta(milliseconds=1)):
        with django_assert_num_queries(0):
            assert outcome(plaintext) is O.DEPLOYMENT_TERMINATED


def test_refusals_that_are_permanent_are_answered_from_the_cache(
    live_key, argon2_calls, django_assert_num_queries
):
    key, plaintext = live_key
    services.key_revoke(key_id=key.pk, actor="t")
    assert outcome(plaintext) is O.REVOKED_API_KEY
    with django_assert_num_queries(0):
        assert outcome(plaintext, "other") is O.REVOKED_API_KEY
    assert len(argon2_calls) == 1


# --- revocation and changes cannot be outrun ------------------------------------------------------


def test_a_cached_key_is_refused_as_soon_as_its_revoke_commits(live_key, argon2_calls):
    key, plaintext = live_key
    assert outcome(plaintext) is O.OK
    services.key_revoke(key_id=key.pk, actor="t")
    assert outcome(plaintext) is O.REVOKED_API_KEY
    assert len(argon2_calls) == 1  # the entry still identifies the key; only its state is re-read


@pytest.mark.parametrize("end", ["stop", "fail", "terminate"])
def test_a_cached_key_is_refused_as_soon_as_its_deployment_ends(live_key, ready_deployment, end):
    _, plaintext = live_key
    assert outcome(plaintext) is O.OK
    actions = {
        "stop": deployment_services.deployment_stop,
        "fail": deployment_services.deployment_fail,
        "terminate": deployment_services.deployment_terminate,
    }
    actions[end](deployment_id=ready_deployment.pk, actor="t")
    # The end revoked the key in its own transaction: 401 from its commit on, never a 409 first.
    assert outcome(plaintext) is O.REVOKED_API_KEY
    assert outcome(plaintext) is O.REVOKED_API_KEY  # and from the cache
    reason = {"stop": "deployment_stopped", "fail": "deployment_failed"}.get(
        end, "deployment_terminated"
    )
    assert set(ApiKey.objects.values_list("revoke_reason", flat=True)) == {reason}


def _racing_fill(monkeypatch, change) -> list[bool]:
    """Make the next fill happen just after `change` commits, with the state read before it:
    exactly the race a plain "delete the entry on commit" loses."""
    real_fill = lookup_cache.fill
    filled: list[bool] = []

    def fill_after_change(public_id, entry, *, live):
        monkeypatch.setattr(lookup_cache, "fill", real_fill)
        change()  # commits (autocommit connection; the lookup's read came before it)
        filled.append(real_fill(public_id, entry, live=live))
        return filled[-1]

    monkeypatch.setattr(lookup_cache, "fill", fill_after_change)
    return filled


def test_a_fill_from_a_read_before_a_revoke_commits_never_answers_after_it(monkeypatch, live_key):
    key, plaintext = live_key
    filled = _racing_fill(monkeypatch, lambda: services.key_revoke(key_id=key.pk, actor="t"))
    assert outcome(plaintext) is O.OK  # this lookup read the database before the commit
    assert filled == [False]  # the tombstone refused the stale fill
    assert outcome(plaintext) is O.REVOKED_API_KEY


def test_a_stale_fill_that_lands_before_the_tombstone_is_hidden_by_it(monkeypatch, live_key):
    key, plaintext = live_key
    real_fill = lookup_cache.fill

    def fill_then_revoke(public_id, entry, *, live):
        monkeypatch.setattr(lookup_cache, "fill", real_fill)
        assert real_fill(public_id, entry, live=live)
        services.key_revoke(key_id=key.pk, actor="t")
        return True

    monkeypatch.setattr(lookup_cache, "fill", fill_then_revoke)
    assert outcome(plaintext) is O.OK
    assert outcome(plaintext) is O.REVOKED_API_KEY


def test_a_fill_from_a_read_before_a_stop_commits_never_answers_after_it(
    monkeypatch, live_key, ready_deployment
):
    _, plaintext = live_key
    _racing_fill(
        monkeypatch,
        lambda: deployment_services.deployment_stop(deployment_id=ready_deployment.pk, actor="t"),
    )
    assert outcome(plaintext) is O.OK
    assert outcome(plaintext) is O.REVOKED_API_KEY


def test_a_fill_from_a_read_before_a_restart_commits_is_stale(
    monkeypatch, live_key, ready_deployment
):
    _, plaintext = live_key
    _racing_fill(
        monkeypatch,
        lambda: deployment_services.deployment_mark_provisioning(
            deployment_id=ready_deployment.pk, actor="t"
        ),
    )
    assert outcome(plaintext) is O.OK
    assert outcome(plaintext) is O.DEPLOYMENT_NOT_READY


def test_a_restart_and_a_new_endpoint_reach_cached_lookups(live_key, ready_deployment):
    _, plaintext = live_key
    assert lookup(plaintext).body()["endpoint_url"] == "http://127.0.0.1:9/model"
    deployment_services.deployment_mark_provisioning(deployment_id=ready_deployment.pk, actor="t")
    assert outcome(plaintext) is O.DEPLOYMENT_NOT_READY
    deployment_services.deployment_mark_ready(
        deployment_id=ready_deployment.pk, endpoint_url="http://new:8/", actor="t"
    )
    assert lookup(plaintext).body()["endpoint_url"] == "http://new:8"
    deployment_services.deployment_apply_provisioner_status(
        deployment_id=ready_deployment.pk,
        status="ready",
        endpoint_url="http://newer:8",
        reason="",
        actor="t",
    )
    assert lookup(plaintext).body()["endpoint_url"] == "http://newer:8"


def test_an_extension_reaches_cached_lookups(live_key, ready_deployment):
    _, plaintext = live_key
    assert outcome(plaintext) is O.OK
    old_end = ready_deployment.pack_ends_at
    deployment_services.deployment_extend(
        deployment_id=ready_deployment.pk, pack_hours=8, actor="t"
    )
    with time_machine.travel(old_end + timedelta(minutes=1)):
        assert outcome(plaintext) is O.OK


def test_deleting_a_key_refuses_its_cached_lookups(live_key):
    key, plaintext = live_key
    assert outcome(plaintext) is O.OK
    ApiKey.objects.filter(pk=key.pk).delete()
    assert outcome(plaintext) is O.INVALID_API_KEY


# --- cheap and bounded rejection ------------------------------------------------------------------


@override_settings(
    BUDDY_LOOKUP_MAX_CONCURRENT_VERIFICATIONS=1, BUDDY_LOOKUP_VERIFY_WAIT_SECONDS=0.05
)
def test_verifications_beyond_the_bound_are_refused_not_queued(live_key):
    _, plaintext = live_key
    slots = limits.verify_slots.get()
    assert slots.acquire(timeout=1)
    try:
        result = lookup(plaintext)
        assert (result.outcome, result.retry_after) == (O.RATE_LIMITED, 1)
    finally:
        slots.release()
    assert outcome(plaintext) is O.OK


@override_settings(BUDDY_LOOKUP_MAX_CONCURRENT_VERIFICATIONS=2)
def test_no_more_verifications_run_at_once_than_the_bound(ready_deployment, monkeypatch):
    keys = [
        services.key_create(deployment_id=ready_deployment.pk, name=f"k{i}", actor="t")[1]
        for i in range(6)
    ]
    running, peak, lock = [0], [0], threading.Lock()
    real = hashing.verify_key

    def slow_verify(stored_hash: str, plaintext: str) -> bool:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.15)  # hold the slot long enough for the others to pile up
            return real(stored_hash, plaintext)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(hashing, "verify_key", slow_verify)
    from django.db import connections

    results: list[LookupOutcome] = []

    def worker(p: str) -> None:
        try:
            results.append(outcome(p))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(p,)) for p in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [O.OK] * 6
    assert peak[0] == 2


# --- last use -------------------------------------------------------------------------------------


def test_last_use_is_batched_to_redis_and_flushed_by_the_periodic_task(
    live_key, django_assert_num_queries
):
    key, plaintext = live_key
    assert outcome(plaintext) is O.OK
    with django_assert_num_queries(0):
        for _ in range(5):
            assert outcome(plaintext) is O.OK
    assert usage.recorder.flush() == 1
    key.refresh_from_db()
    assert key.last_used_at is None  # not written by the lookups themselves
    assert tasks.flush_last_used() == 1
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert abs((key.last_used_at - key.created_at).total_seconds()) < 60
    assert tasks.flush_last_used() == 0  # each recorded use is written once


def test_last_use_never_moves_backwards(live_key):
    key, _ = live_key
    from django.utils import timezone

    later = timezone.now() + timedelta(seconds=30)
    services.key_touch_last_used(used={key.public_id: later})
    services.key_touch_last_used(used={key.public_id: later - timedelta(seconds=20)})
    key.refresh_from_db()
    assert key.last_used_at == later


def test_flush_last_used_is_scheduled_often_enough():
    entry = settings.CELERY_BEAT_SCHEDULE["flush-last-used"]
    assert entry["task"] == "keys.flush_last_used"
    assert entry["schedule"] + settings.BUDDY_LOOKUP_LAST_USED_LOCAL_FLUSH_SECONDS <= 60


# --- the service token --------------------------------------------------------------------------


def test_a_revoked_service_token_stops_working_within_its_cache_ttl(live_key):
    token, secret = service_token_create(name="edge", role="proxy")
    header = f"Bearer {secret}"
    with override_settings(BUDDY_LOOKUP_SERVICE_TOKEN_CACHE_SECONDS=0.2):
        assert service_token_authenticate_cached(authorization=header) is not None
        service_token_revoke(token_id=token.pk)
        wait_until(
            lambda: service_token_authenticate_cached(authorization=header) is None,
            timeout=5,
            interval=0.02,
            what="the revoked service token to be refused",
        )


# --- without Redis --------------------------------------------------------------------------------


def test_lookups_answer_correctly_from_postgresql_when_redis_is_unreachable(
    private_redis, ready_deployment
):
    with override_settings(REDIS_URL=private_redis.url):
        core_redis.client.cache_clear()
        try:
            key, plaintext = services.key_create(
                deployment_id=ready_deployment.pk, name="k", actor="t"
            )
            other, other_plaintext = services.key_create(
                deployment_id=ready_deployment.pk, name="o", actor="t"
            )
            assert outcome(plaintext) is O.OK  # cached in the private Redis
            private_redis.kill()
            started = time.monotonic()
            assert outcome(plaintext) is O.OK
            assert outcome(plaintext, "qwen3.6:27b") is O.MODEL_MISMATCH
            services.key_revoke(key_id=key.pk, actor="t")  # commits although Redis is down
            assert outcome(plaintext) is O.REVOKED_API_KEY
            assert outcome(other_plaintext) is O.OK
            deployment_services.deployment_stop(deployment_id=ready_deployment.pk, actor="t")
            assert outcome(other_plaintext) is O.REVOKED_API_KEY
            assert outcome("ob_sk_bad") is O.INVALID_API_KEY
            assert time.monotonic() - started < 5  # answered without waiting on Redis each time
            assert usage.recorder.flush() == 2  # last use goes straight to the database
            for used in (key, other):
                used.refresh_from_db()
                assert used.last_used_at is not None
        finally:
            core_redis.client.cache_clear()
            lookup_cache.breaker.reset()


def _embedded_mode():
    """The settings of the embedded default (`make run`: no REDIS_URL)."""
    return override_settings(REDIS_URL="", EMBEDDED=True)


def test_without_redis_url_the_lookup_answers_through_the_in_process_redis(
    live_key, ready_deployment
):
    _, plaintext = live_key
    with _embedded_mode():
        core_redis.client.cache_clear()
        try:
            assert outcome(plaintext) is O.OK
            deployment_services.deployment_fail(deployment_id=ready_deployment.pk, actor="t")
            assert outcome(plaintext) is O.REVOKED_API_KEY
        finally:
            core_redis.client.cache_clear()


def test_the_embedded_mode_runs_the_production_lookup_cache_and_last_use_in_process(
    live_key, argon2_calls, django_assert_num_queries
):
    """Without REDIS_URL the lookup cache, its guards, the failure counter and last use (recorder
    -> Redis sorted set -> `keys.flush_last_used`) are the production code on the in-process
    Redis; the Redis at the test's REDIS_URL sees none of it."""
    key, plaintext = live_key
    real = redis.Redis.from_url(settings.REDIS_URL)
    with _embedded_mode():
        core_redis.client.cache_clear()
        try:
            in_process = core_redis.client()
            assert isinstance(in_process, fakeredis.FakeRedis)
            assert core_redis.client() is in_process  # one client, so one server, per process

            # The lookup cache: a verified lookup fills it, the next ones answer from it.
            assert outcome(plaintext) is O.OK
            with django_assert_num_queries(0):
                assert outcome(plaintext) is O.OK
                assert outcome(plaintext, "qwen3.6:27b") is O.MODEL_MISMATCH
            assert len(argon2_calls) == 1
            assert in_process.exists(lookup_cache.entry_name(key.public_id))

            # Last use: the recorder hands it to the sorted set, the periodic task writes it.
            assert usage.recorder.flush() == 1
            assert in_process.zscore(usage.USED_SET, key.public_id) is not None
            key.refresh_from_db()
            assert key.last_used_at is None
            assert tasks.flush_last_used() == 1
            key.refresh_from_db()
            assert key.last_used_at is not None
            assert tasks.flush_last_used() == 0

            # Failed verifications are counted there too.
            head = "ob_sk_" + key.public_id + "q" * 30
            assert outcome(head + tokens.checksum(head)) is O.INVALID_API_KEY
            assert limits.failures(key.public_id)[0] == 1
            assert in_process.exists(limits.failure_counter(key.public_id))
            assert limits.failures(key.public_id, "10.0.0.9")[0] == 0  # another address

            # A revoke's tombstone reaches the cached entry.
            services.key_revoke(key_id=key.pk, actor="t")
            assert in_process.exists(lookup_cache.key_tombstone(key.public_id))
            assert outcome(plaintext) is O.REVOKED_API_KEY
        finally:
            core_redis.client.cache_clear()
    assert list(real.scan_iter(match=f"{lookup_cache.PREFIX}*")) == []
