"""Guards of the lookup cache in Redis that a revocation or a deployment's end writes.

Revocations and ends are permanent, so they are guarded by tombstones: written *before* the
revoking transaction commits and kept longer than any cache entry lives, so a cache entry that a
concurrent lookup filled from a pre-commit read can never be served once the commit is done.
Changes that are not permanent (restart, new endpoint, extension) bump a per-deployment
generation before and after the commit; an entry filled under an older generation is ignored.

Without Redis (the embedded default) there is no lookup cache, so there is nothing to guard.
"""

from __future__ import annotations

import logging
from functools import cache

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

PREFIX = "buddy:lookup:"
# Longer than any cache entry can live (see ENTRY_TTL_SECONDS).
TOMBSTONE_TTL_SECONDS = 24 * 3600
ENTRY_TTL_SECONDS = 300


@cache
def client() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
    )


def key_tombstone(public_id: str) -> str:
    return f"{PREFIX}tomb:k:{public_id}"


def deployment_tombstone(deployment_id: object) -> str:
    return f"{PREFIX}tomb:d:{deployment_id}"


def deployment_generation(deployment_id: object) -> str:
    return f"{PREFIX}gen:d:{deployment_id}"


def _set_tombstone(name: str) -> None:
    r = client()
    if r is None:
        return
    try:
        r.set(name, b"1", ex=TOMBSTONE_TTL_SECONDS)
    except redis.RedisError:
        # Redis unreachable: lookups then answer from PostgreSQL, which holds the truth.
        logger.warning("lookup cache unreachable while writing a tombstone")


def tombstone_key(public_id: str) -> None:
    _set_tombstone(key_tombstone(public_id))


def tombstone_deployment(deployment_id: object) -> None:
    _set_tombstone(deployment_tombstone(deployment_id))


def _bump(deployment_id: object) -> None:
    r = client()
    if r is None:
        return
    try:
        r.incr(deployment_generation(deployment_id))
    except redis.RedisError:
        logger.warning("lookup cache unreachable while bumping a deployment generation")


def invalidate_deployment_on_commit(deployment_id: object) -> None:
    """Make cached answers of this deployment stale now and again once the transaction commits."""
    _bump(deployment_id)
    transaction.on_commit(lambda: _bump(deployment_id))
