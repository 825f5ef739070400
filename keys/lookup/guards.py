"""The write side of the lookup cache: tombstones and generations, written by revocations and by a
deployment's changes so that no cached answer outlives them (see `keys.lookup`'s docstring)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis
from django.conf import settings
from django.db import transaction
from django.db.models.signals import pre_delete

from buddy.core.redis import client
from deployments.models import Deployment
from deployments.signals import deployment_changed, deployments_ended
from keys.lookup.cache import (
    TOMBSTONE_TTL_SECONDS,
    deployment_generation,
    deployment_tombstone,
    key_tombstone,
)
from keys.models import ApiKey

logger = logging.getLogger(__name__)


def _set_tombstone(name: str) -> None:
    try:
        client().set(name, b"1", ex=TOMBSTONE_TTL_SECONDS)
    except redis.RedisError:
        # Redis unreachable: lookups then answer from PostgreSQL, which holds the truth. But a
        # Redis that was only out of reach (a blip, a partition) still holds the entries filled
        # before: keep trying, so the tombstone lands as soon as Redis answers again.
        logger.warning("lookup cache unreachable while writing a tombstone; retrying it")
        tombstone_retrier.add(name)


class _TombstoneRetrier:
    """Tombstones that could not be written, retried by a daemon thread of this process until
    they are, or until every entry they guard has expired on its own (the entry TTL, plus a
    minute for a lookup that read the database before the revoke and fills the cache late).

    What it cannot cover: the revoking process dying before Redis is back (documented)."""

    RETRY_EVERY_SECONDS = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[str, float] = {}  # tombstone name -> when to give up (monotonic)
        self._thread: threading.Thread | None = None

    def add(self, name: str) -> None:
        give_up = time.monotonic() + settings.BUDDY_LOOKUP_CACHE_TTL_SECONDS + 60
        with self._lock:
            self._pending[name] = give_up
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="buddy-tombstone-retrier", daemon=True
                )
                self._thread.start()

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.RETRY_EVERY_SECONDS)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                items = list(self._pending.items())
            r = client()
            for name, give_up in items:
                try:
                    r.set(name, b"1", ex=TOMBSTONE_TTL_SECONDS)
                    done = True
                except redis.RedisError:
                    done = time.monotonic() > give_up
                    if done:
                        logger.error("gave up writing the lookup tombstone %s", name)
                if done:
                    with self._lock:
                        if self._pending.get(name) == give_up:
                            del self._pending[name]


tombstone_retrier = _TombstoneRetrier()


def tombstone_key(public_id: str) -> None:
    _set_tombstone(key_tombstone(public_id))


def tombstone_deployment(deployment_id: object) -> None:
    _set_tombstone(deployment_tombstone(deployment_id))


def _bump(deployment_id: object) -> None:
    try:
        client().incr(deployment_generation(deployment_id))
    except redis.RedisError:
        logger.warning("lookup cache unreachable while bumping a deployment generation")


def invalidate_deployment_on_commit(deployment_id: object) -> None:
    """Make cached answers of this deployment stale now and again once the transaction commits."""
    _bump(deployment_id)
    transaction.on_commit(lambda: _bump(deployment_id))


def _deployments_ended(sender: type, deployment_ids: Sequence[object], **kwargs: object) -> None:
    for deployment_id in deployment_ids:
        tombstone_deployment(deployment_id)


def _deployment_changed(sender: type, deployment_id: object, **kwargs: object) -> None:
    invalidate_deployment_on_commit(deployment_id)


def _key_deleted(sender: type, instance: ApiKey, **kwargs: object) -> None:
    tombstone_key(instance.public_id)


def _deployment_deleted(sender: type, instance: Deployment, **kwargs: object) -> None:
    tombstone_deployment(instance.pk)


def connect() -> None:
    """Guard every change that can make a cached answer wrong, before its transaction commits:
    a deployment's end or other change (`deployments.signals`), and deleting a key or a deployment
    (the admin can), which is an end too."""
    deployments_ended.connect(_deployments_ended, weak=False, dispatch_uid="lookup-ended")
    deployment_changed.connect(_deployment_changed, weak=False, dispatch_uid="lookup-changed")
    pre_delete.connect(_key_deleted, sender=ApiKey, weak=False, dispatch_uid="lookup-key-deleted")
    pre_delete.connect(
        _deployment_deleted, sender=Deployment, weak=False, dispatch_uid="lookup-deployment-deleted"
    )
