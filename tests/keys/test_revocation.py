"""Revocation without holes (API.md v2, "Revocation is part of the end"): an end revokes its keys in
its own transaction, no Redis restart, restore or failover brings a 200 back, a guard Redis could
not take is owed in PostgreSQL, and one address's wrong guesses never lock out a key's owner."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.test import Client, override_settings

from buddy.accounts.services import service_token_create
from deployments import services as deployment_services
from deployments.models import Deployment
from keys import services, tasks
from keys.lookup import cache as lookup_cache
from keys.lookup import guards
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from keys.models import ApiKey, PendingCacheGuard
from tests.factories import DeploymentFactory
from tests.harness.redis import PrivateRedis, app_broker, broker_idle
from tests.harness.wait import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
O = LookupOutcome
URL = "/internal/v1/auth/lookup"


@pytest.fixture(autouse=True)
def _fresh_breaker() -> Iterator[None]:
    lookup_cache.breaker.reset()
    yield
    lookup_cache.breaker.reset()


def outcome(plaintext: str, **kwargs: object) -> LookupOutcome:
    return key_lookup(authorization=f"Bearer {plaintext}", **kwargs).outcome


# --- the end revokes, in its own transaction ------------------------------------------------------


@pytest.mark.parametrize(
    "warm, worker",
    [(True, False), (False, False), pytest.param(True, True, marks=pytest.mark.celery_worker)],
)
def test_a_stop_over_the_api_answers_revoked_for_every_key_at_once_worker_or_not(
    api, user, template, warm, worker
):
    """Without the worker the revoke-all message waits in the broker, unconsumed; with it, the
    message is consumed and finds nothing left to revoke."""
    deployment = DeploymentFactory(owner=user, template=template, ready=True)
    default = services.key_create_default(deployment_id=deployment.pk)
    assert default is not None
    plaintexts = [
        services.key_create(deployment_id=deployment.pk, name=f"k{i}", actor="t")[1]
        for i in range(3)
    ]
    if warm:
        assert all(outcome(p) is O.OK for p in plaintexts)
    assert api.post(f"/api/v1/deployments/{deployment.pk}/stop").status_code == 202
    for _ in range(3):  # at once, and on every later lookup (cold, then from the cache)
        assert [outcome(p) for p in plaintexts] == [O.REVOKED_API_KEY] * 3
    keys = ApiKey.objects.filter(deployment=deployment)
    assert {k.revoke_reason for k in keys} == {"deployment_stopped"}
    assert all(k.revoked_at is not None for k in keys)
    assert deployment.events.filter(kind="key_revoked").count() == 4
    if worker:
        wait_until(broker_idle, timeout=60, what="the revoke-all message consumed")
    # The safety net finds nothing to do.
    tasks.revoke_for_deployments([str(deployment.pk)])
    assert deployment.events.filter(kind="key_revoked").count() == 4
    assert not deployment.events.filter(kind="key_revoked", actor="system:revocation").exists()
    assert [outcome(p) for p in plaintexts] == [O.REVOKED_API_KEY] * 3


def test_the_expiry_sweep_revokes_its_batch_set_based_with_the_reason_of_the_end(template):
    from datetime import timedelta

    from django.utils import timezone

    ended = [DeploymentFactory(template=template, ready=True) for _ in range(3)]
    live = DeploymentFactory(template=template, ready=True)
    plaintexts = {
        d.pk: services.key_create(deployment_id=d.pk, name="k", actor="t")[1]
        for d in [*ended, live]
    }
    assert all(outcome(p) is O.OK for p in plaintexts.values())  # cached
    Deployment.objects.filter(pk__in=[d.pk for d in ended]).update(
        pack_ends_at=timezone.now() - timedelta(seconds=1)
    )
    assert sorted(deployment_services.deployment_expire_batch()) == sorted(d.pk for d in ended)
    for d in ended:
        assert outcome(plaintexts[d.pk]) is O.REVOKED_API_KEY
        assert ApiKey.objects.get(deployment=d).revoke_reason == "deployment_terminated"
    assert outcome(plaintexts[live.pk]) is O.OK


def test_a_cached_409_of_an_ended_deployment_turns_401_as_soon_as_its_keys_are_revoked(
    live_key, ready_deployment
):
    """Regression (issue 12, 1): an ended deployment whose keys were still active (ended before
    this release, or by a path that does not revoke) had its 409 cached as permanent, and that
    409 kept answering for the entry's lifetime after the revocation task had revoked the key."""
    _, plaintext = live_key
    assert outcome(plaintext) is O.OK
    Deployment.objects.filter(pk=ready_deployment.pk).update(status="stopped")
    guards.tombstone_deployment(ready_deployment.pk)
    assert outcome(plaintext) is O.DEPLOYMENT_STOPPED  # fills the cache with the 409
    assert outcome(plaintext) is O.DEPLOYMENT_STOPPED  # answered from it
    tasks.revoke_for_deployments([str(ready_deployment.pk)])
    assert outcome(plaintext) is O.REVOKED_API_KEY
    assert outcome(plaintext) is O.REVOKED_API_KEY


# --- no Redis restart, restore or failover brings a 200 back --------------------------------------


class _Snapshot:
    """SAVE the private Redis now; later, restart it from that RDB (as a restore would)."""

    def __init__(self, server: PrivateRedis, tmp_path: Path) -> None:
        self.server = server
        self.saved = tmp_path / "snapshot.rdb"
        redis.Redis.from_url(server.url).save()
        shutil.copyfile(Path(server.tmp_dir) / "dump.rdb", self.saved)

    def restore(self) -> None:
        self.server.kill()
        shutil.copyfile(self.saved, Path(self.server.tmp_dir) / "dump.rdb")
        self.server.start()
        lookup_cache.breaker.reset()


@pytest.fixture
def cache_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    data = tmp_path / "redis"
    data.mkdir()
    with PrivateRedis(str(data)) as server, app_broker(server.url):
        yield server


def _warm(plaintext: str) -> None:
    assert outcome(plaintext) is O.OK
    assert outcome(plaintext) is O.OK


@pytest.mark.parametrize("change", ["revoke", "stop", "fail"])
def test_redis_restored_from_a_snapshot_before_a_revoke_or_an_end_never_answers_200(
    cache_redis, tmp_path, change
):
    deployment = DeploymentFactory(ready=True)
    key, plaintext = services.key_create(deployment_id=deployment.pk, name="k", actor="t")
    _warm(plaintext)
    snapshot = _Snapshot(cache_redis, tmp_path)
    if change == "revoke":
        services.key_revoke(key_id=key.pk, actor="t")
    elif change == "stop":
        deployment_services.deployment_stop(deployment_id=deployment.pk, actor="t")
    else:
        deployment_services.deployment_fail(deployment_id=deployment.pk, actor="t")
    assert outcome(plaintext) is O.REVOKED_API_KEY
    snapshot.restore()
    raw = redis.Redis.from_url(cache_redis.url)
    # The old entry is back without the guards written after the snapshot: exactly the hole.
    assert raw.exists(lookup_cache.entry_name(key.public_id))
    assert not raw.exists(lookup_cache.key_tombstone(key.public_id))
    for _ in range(3):
        assert outcome(plaintext) is O.REVOKED_API_KEY


def test_redis_restored_from_a_snapshot_before_a_new_endpoint_never_answers_the_old_one(
    cache_redis, tmp_path
):
    deployment = DeploymentFactory(ready=True)
    _key, plaintext = services.key_create(deployment_id=deployment.pk, name="k", actor="t")
    _warm(plaintext)
    snapshot = _Snapshot(cache_redis, tmp_path)
    deployment_services.deployment_apply_provisioner_status(
        deployment_id=deployment.pk,
        status="ready",
        endpoint_url="http://10.9.9.9:8000",
        reason="",
        actor="t",
    )
    snapshot.restore()
    for _ in range(3):
        result = key_lookup(authorization=f"Bearer {plaintext}")
        assert result.ok and result.snapshot is not None
        assert result.snapshot.endpoint_url == "http://10.9.9.9:8000"


def test_a_failover_to_a_replica_that_missed_the_revoke_never_answers_200(cache_redis, tmp_path):
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    deployment = DeploymentFactory(ready=True)
    key, plaintext = services.key_create(deployment_id=deployment.pk, name="k", actor="t")
    _warm(plaintext)
    with PrivateRedis(str(replica_dir)) as replica:
        r = redis.Redis.from_url(replica.url)
        r.replicaof("127.0.0.1", cache_redis.port)
        entry = lookup_cache.entry_name(key.public_id)
        wait_until(lambda: r.exists(entry), timeout=30, what="the replica to have the entry")
        r.replicaof("NO", "ONE")  # it lags from here on: it misses the revoke, then is promoted
        services.key_revoke(key_id=key.pk, actor="t")
        with app_broker(replica.url):
            lookup_cache.breaker.reset()
            assert r.exists(entry) and not r.exists(lookup_cache.key_tombstone(key.public_id))
            for _ in range(3):
                assert outcome(plaintext) is O.REVOKED_API_KEY


def test_an_entry_of_another_epoch_is_a_miss(cache_redis, live_key):
    key, plaintext = live_key
    _warm(plaintext)
    raw = redis.Redis.from_url(cache_redis.url)
    name = lookup_cache.entry_name(key.public_id)
    stored = raw.get(name)
    assert stored is not None
    entry = lookup_cache.Entry.decode(stored)
    assert entry is not None and entry.epoch == raw.info("server")["run_id"]
    dep, _epoch, body = stored.decode().split("|", 2)
    raw.set(name, f"{dep}|{'0' * 40}|{body}")
    cached = lookup_cache.read(key.public_id)
    assert cached is not None and cached.entry is None


# --- a guard Redis could not take is owed in PostgreSQL -------------------------------------------


def test_a_tombstone_owed_by_a_process_that_died_is_written_by_the_periodic_task(cache_redis):
    deployment = DeploymentFactory(ready=True)
    key, plaintext = services.key_create(deployment_id=deployment.pk, name="k", actor="t")
    _warm(plaintext)
    raw = redis.Redis.from_url(cache_redis.url)
    tombstone = lookup_cache.key_tombstone(key.public_id)

    raw.execute_command("CLIENT", "PAUSE", 1500, "WRITE")
    services.key_revoke(key_id=key.pk, actor="t")  # commits; Redis did not take the tombstone
    guards.guard_retrier.forget()  # ... and the revoking process dies before retrying it
    assert list(PendingCacheGuard.objects.values_list("op", "name")) == [("tombstone", tombstone)]
    wait_until(lambda: _writable(raw), timeout=10, what="Redis to take writes again")
    assert not raw.exists(tombstone) and raw.exists(lookup_cache.entry_name(key.public_id))

    assert tasks.write_pending_guards() == 1
    assert raw.exists(tombstone)
    assert not PendingCacheGuard.objects.exists()
    lookup_cache.breaker.reset()
    assert outcome(plaintext) is O.REVOKED_API_KEY
    assert tasks.write_pending_guards() == 0


def test_a_generation_bump_redis_could_not_take_is_owed_too(
    cache_redis, live_key, ready_deployment
):
    _, plaintext = live_key
    _warm(plaintext)
    cache_redis.kill()
    deployment_services.deployment_mark_provisioning(deployment_id=ready_deployment.pk, actor="t")
    generation = lookup_cache.deployment_generation(ready_deployment.pk)
    owed = list(PendingCacheGuard.objects.values_list("op", "name"))
    assert owed == [("bump", generation), ("bump", generation)]  # before and after the commit
    assert tasks.write_pending_guards() == 0  # Redis still down: they stay owed
    assert PendingCacheGuard.objects.count() == 2


def _writable(r: redis.Redis) -> bool:
    try:
        r.set("buddy:test:probe", b"1", ex=5)
        return True
    except redis.RedisError:
        return False


# --- the failed-verification limiter cannot lock the owner out ------------------------------------


@override_settings(BUDDY_LOOKUP_FAILURE_LIMIT=10)
def test_wrong_keys_from_one_address_do_not_lock_out_the_owner_at_another(live_key):
    from keys import tokens

    key, plaintext = live_key
    head = "ob_sk_" + key.public_id + "x" * 30
    wrong = head + tokens.checksum(head)
    for _ in range(10):
        assert outcome(wrong, client_ip="203.0.113.7") is O.INVALID_API_KEY
    assert outcome(wrong, client_ip="203.0.113.7") is O.RATE_LIMITED
    # The owner, from another address, on a cache miss (nothing cached yet): verified, 200.
    assert lookup_cache.read(key.public_id) is not None
    assert lookup_cache.read(key.public_id).entry is None  # type: ignore[union-attr]
    assert outcome(plaintext, client_ip="198.51.100.1") is O.OK
    # And once the cache recognises the key by its HMAC, not even the guessing address limits it.
    assert outcome(plaintext, client_ip="203.0.113.7") is O.OK


def test_the_lookup_body_carries_client_ip_and_an_invalid_one_is_ignored(live_key):
    from keys import tokens

    key, plaintext = live_key
    _token, secret = service_token_create(name="edge", role="proxy")
    client = Client()

    def call(authorization: str, client_ip: object) -> tuple[int, str]:
        response = client.post(
            URL,
            data=json.dumps({"authorization": f"Bearer {authorization}", "client_ip": client_ip}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )
        return response.status_code, response.json().get("error", {}).get("code", "")

    head = "ob_sk_" + key.public_id + "y" * 30
    wrong = head + tokens.checksum(head)
    with override_settings(BUDDY_LOOKUP_FAILURE_LIMIT=3):
        for _ in range(3):
            assert call(wrong, "2001:db8::1") == (401, "invalid_api_key")
        assert call(wrong, "2001:db8:0:0::1") == (429, "rate_limited")  # the same address
        assert call(wrong, "2001:db8::2") == (401, "invalid_api_key")  # another one
        for bad in ("not-an-ip", 12, None, "1.2.3.4; drop"):  # one shared count, no 400
            assert call(wrong, bad)[0] in (401, 429)
        assert call(plaintext, "192.0.2.1") == (200, "")


# --- the cache on a Redis of its own ---------------------------------------------------------------


def test_buddy_cache_redis_url_puts_the_lookup_cache_on_its_own_redis(tmp_path, live_key):
    from django.conf import settings

    key, plaintext = live_key
    main = redis.Redis.from_url(settings.REDIS_URL)
    with PrivateRedis(str(tmp_path)) as cache_server:
        with override_settings(BUDDY_CACHE_REDIS_URL=cache_server.url):
            lookup_cache.breaker.reset()
            _warm(plaintext)
            services.key_revoke(key_id=key.pk, actor="t")
            assert outcome(plaintext) is O.REVOKED_API_KEY
        own = redis.Redis.from_url(cache_server.url)
        assert own.exists(lookup_cache.entry_name(key.public_id))
        assert own.exists(lookup_cache.key_tombstone(key.public_id))
    assert not main.exists(lookup_cache.entry_name(key.public_id))
    assert not main.exists(lookup_cache.key_tombstone(key.public_id))


def test_a_cache_redis_that_refuses_info_fails_closed(cache_redis, live_key):
    """Without the run id no restart can be detected: nothing is filled, lookups stay correct."""
    key, plaintext = live_key
    raw = redis.Redis.from_url(cache_redis.url)
    raw.execute_command("ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info")
    url = cache_redis.url.replace("redis://", "redis://noinfo:pw@")
    with override_settings(BUDDY_CACHE_REDIS_URL=url):
        lookup_cache.breaker.reset()
        assert outcome(plaintext) is O.OK
        assert outcome(plaintext) is O.OK
        assert not raw.exists(lookup_cache.entry_name(key.public_id))
        services.key_revoke(key_id=key.pk, actor="t")
        assert outcome(plaintext) is O.REVOKED_API_KEY
