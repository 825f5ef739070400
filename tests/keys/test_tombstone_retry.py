"""A revoke that cannot reach Redis still lands its tombstone once Redis answers again, so the
entries Redis kept through the blip never answer 200 for the revoked key."""

from __future__ import annotations

import pytest
import redis

from keys import services as key_services
from keys.lookup import cache as lookup_cache
from keys.lookup import guards
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from tests.factories import DeploymentFactory
from tests.harness.redis import PrivateRedis, app_broker
from tests.harness.wait import wait_until


@pytest.mark.django_db(transaction=True)
def test_a_tombstone_that_could_not_be_written_lands_once_redis_answers_again(tmp_path):
    with PrivateRedis(str(tmp_path)) as server, app_broker(server.url):
        deployment = DeploymentFactory(ready=True)
        key, plaintext = key_services.key_create(deployment_id=deployment.pk, name="k", actor="t")
        auth = f"Bearer {plaintext}"
        assert key_lookup(authorization=auth).ok  # fills the cache
        assert key_lookup(authorization=auth).ok  # answered from it
        raw = redis.Redis.from_url(server.url)
        tombstone = lookup_cache.key_tombstone(key.public_id)

        # Writes stall for 3 s (Redis keeps its data, unlike a restart): the revoke's tombstone
        # times out, and the revoke commits anyway.
        raw.execute_command("CLIENT", "PAUSE", 3000, "WRITE")
        key_services.key_revoke(key_id=key.pk, actor="t")
        assert tombstone in guards.tombstone_retrier.pending()

        wait_until(lambda: raw.exists(tombstone), timeout=20, what="the tombstone written")
        wait_until(
            lambda: tombstone not in guards.tombstone_retrier.pending(),
            timeout=5,
            what="the retry finished",
        )
        # The entry filled before the revoke is still there; the tombstone hides it.
        assert raw.exists(lookup_cache.entry_name(key.public_id))
        lookup_cache.breaker.reset()
        assert key_lookup(authorization=auth).outcome is LookupOutcome.REVOKED_API_KEY
