"""The write side of the lookup cache: tombstones and generations, written by revocations and by a
deployment's changes so that no cached answer outlives them, and owed in PostgreSQL when Redis
cannot take them (see `keys.lookup`'s docstring)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models.signals import pre_delete

from buddy.core.redis import cache_client
from deployments.models import Deployment
from deployments.signals import deployment_changed, deployments_ended
from keys.lookup.cache import (
    TOMBSTONE_TTL_SECONDS,
    deployment_generation,
    deployment_tombstone,
    key_generation,
    key_tombstone,
)
from keys.models import ApiKey, PendingCacheGuard

logger = logging.getLogger(__name__)

Op = PendingCacheGuard.Op


def _apply(r: redis.Redis | redis.client.Pipeline, op: str, name: str) -> None:
    if op == Op.TOMBSTONE:
        r.set(name, b"1", ex=TOMBSTONE_TTL_SECONDS)
    else:
        r.incr(name)


def _write(op: str, names: Sequence[str]) -> None:
    """Write these guards to the lookup cache in one round trip; what Redis does not take is owed
    (in PostgreSQL, in the caller's transaction) and retried (by a thread of this process now, by
    beat for whoever dies first)."""
    if not names:
        return
    try:
        with cache_client().pipeline(transaction=False) as pipe:
            for name in names:
                _apply(pipe, op, name)
            pipe.execute()
    except redis.RedisError:
        # Redis unreachable: lookups then answer from PostgreSQL, which holds the truth. But a
        # Redis that was only out of reach (a blip, a partition) still holds the entries filled
        # before: the guards must land as soon as it answers again, whoever is still alive then.
        logger.warning("lookup cache unreachable writing %d %s guard(s): owed", len(names), op)
        _owe(op, names)


def _owe(op: str, names: Sequence[str]) -> None:
    try:
        PendingCacheGuard.objects.bulk_create(PendingCacheGuard(name=n, op=op) for n in names)
    except DatabaseError:
        # Only after a commit (a post-commit bump) can this fail on its own; the thread has it.
        logger.exception("could not record %d owed lookup-cache guard(s)", len(names))
    for name in names:
        guard_retrier.add(op, name)


class _GuardRetrier:
    """Guards that could not be written, retried by a daemon thread of this process until they
    are, or until every entry they guard has expired on its own (the entry TTL, plus a minute for
    a lookup that read the database before the change and fills the cache late). The fast path
    only: the durable one is the `PendingCacheGuard` row that beat writes if this process dies."""

    RETRY_EVERY_SECONDS = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[tuple[str, str], float] = {}  # (op, name) -> give up (monotonic)
        self._thread: threading.Thread | None = None

    def add(self, op: str, name: str) -> None:
        give_up = time.monotonic() + settings.BUDDY_LOOKUP_CACHE_TTL_SECONDS + 60
        with self._lock:
            self._pending[(op, name)] = give_up
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="buddy-guard-retrier", daemon=True
                )
                self._thread.start()

    def pending(self) -> list[str]:
        with self._lock:
            return [name for _op, name in self._pending]

    def forget(self) -> None:
        """Drop everything pending, as the process dying would (tests)."""
        with self._lock:
            self._pending.clear()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.RETRY_EVERY_SECONDS)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                items = list(self._pending.items())
            r = cache_client()
            for (op, name), give_up in items:
                try:
                    _apply(r, op, name)
                    done = True
                except redis.RedisError:
                    done = time.monotonic() > give_up
                    if done:
                        logger.error("gave up writing the lookup-cache guard %s (%s)", name, op)
                if done:
                    with self._lock:
                        if self._pending.get((op, name)) == give_up:
                            del self._pending[(op, name)]


guard_retrier = _GuardRetrier()
# The name of v1 (its tests and operators' habits).
tombstone_retrier = guard_retrier


def pending_guards_write(*, batch_size: int = 1000) -> int:
    """Write the guards that changes owed the cache (`PendingCacheGuard`) and forget them; returns
    how many were written. Rows stay while Redis cannot take them. Run by beat, often."""
    written = 0
    while True:
        with transaction.atomic():
            rows = list(
                PendingCacheGuard.objects.select_for_update(skip_locked=True)
                .order_by("pk")
                .values_list("pk", "op", "name")[:batch_size]
            )
            if not rows:
                return written
            try:
                with cache_client().pipeline(transaction=False) as pipe:
                    for _pk, op, name in rows:
                        _apply(pipe, op, name)
                    pipe.execute()
            except redis.RedisError:
                logger.warning("lookup cache still unreachable: %d guard(s) stay owed", len(rows))
                return written
            PendingCacheGuard.objects.filter(pk__in=[pk for pk, _op, _name in rows]).delete()
            written += len(rows)


def tombstone_key(public_id: str) -> None:
    _write(Op.TOMBSTONE, [key_tombstone(public_id)])


def tombstone_keys(public_ids: Sequence[str]) -> None:
    """Tombstones of many keys (a batch revocation), in one round trip."""
    _write(Op.TOMBSTONE, [key_tombstone(public_id) for public_id in public_ids])


def tombstone_deployment(deployment_id: object) -> None:
    _write(Op.TOMBSTONE, [deployment_tombstone(deployment_id)])


def _bump(deployment_id: object) -> None:
    _write(Op.BUMP, [deployment_generation(deployment_id)])


def invalidate_deployment_on_commit(deployment_id: object) -> None:
    """Make cached answers of this deployment stale now and again once the transaction commits."""
    _bump(deployment_id)
    transaction.on_commit(lambda: _bump(deployment_id))


def invalidate_key_on_commit(public_id: str) -> None:
    """Make cached answers of this key stale now and again once the transaction commits (a change
    of its expiry or limits: no entry filled from a read before the commit answers after it)."""
    name = key_generation(public_id)
    _write(Op.BUMP, [name])
    transaction.on_commit(lambda: _write(Op.BUMP, [name]))


def _deployments_ended(sender: type, deployment_ids: Sequence[object], **kwargs: object) -> None:
    _write(Op.TOMBSTONE, [deployment_tombstone(deployment_id) for deployment_id in deployment_ids])


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
