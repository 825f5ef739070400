"""The proxy lookup's cache in Redis, and the guards that make it safe against revocation.

What is stored (all under `buddy:lookup:`):

- `e:<public id>` — the *entry*: what a lookup of that key needs (deployment, model, endpoint,
  status, `pack_ends_at`, revoked) plus an HMAC-SHA256 of the full key under a server-side pepper
  (`BUDDY_LOOKUP_CACHE_PEPPER`) and the deployment *generation* it was filled under. It is written
  only after a successful argon2 verification, so a presented key whose HMAC matches it (compared
  with `hmac.compare_digest`) is the verified key: no argon2 and no SQL on a hit. It lives
  `BUDDY_LOOKUP_CACHE_TTL_SECONDS` (default 300 s).
- `tomb:k:<public id>` / `tomb:d:<deployment id>` — *tombstones*, written by `key_revoke`,
  `key_revoke_all_for_deployment` and a deployment's end (`deployments.followups`) **before**
  their transaction commits, and kept 24 h, longer than any entry lives.
- `gen:d:<deployment id>` — the deployment's *generation*, bumped before and after the commit of
  every change that is not permanent (restart, new endpoint, extension).
- `fail:<public id>` — failed verifications in the current window (the 429 `rate_limited` counter).
- `used` — a sorted set public id -> last use (epoch seconds), flushed to the database by beat.

Why no lookup can answer 200 once a revoke or an end has committed:

1. A hit is read by one Lua script, atomically: the entry, its key's tombstone, its deployment's
   tombstone and generation. A live answer is served only if neither tombstone exists and the
   generation is the one the entry was filled under. A tombstone exists from *before* the commit,
   so a hit after the commit always sees it and falls through to PostgreSQL, which says revoked.
2. A miss reads the guards (tombstones + generation G) *before* it reads the database, and fills
   through a second Lua script that writes the entry only if the generation is still G and, for a
   live entry, no tombstone exists. The race a plain "delete on commit" loses — a lookup reads the
   database just before the commit and writes the cache just after it — ends here in one of two
   ways: the tombstone was written before the fill (the fill is refused), or the fill came first
   and the tombstone, written before the commit, hides the entry from every later hit. Either way
   the entry never answers again; and since tombstones outlive entries (300 s vs 24 h), the
   tombstone cannot expire first. The same holds for generations: a fill carries the generation
   read before its database read, and the after-commit bump makes any entry filled from a
   pre-commit read stale.
3. Negative answers that are permanent (revoked key, ended deployment) are cached and served
   regardless of guards: nothing can make them 200 again.
4. An ended pack answers 409 at once from the cache too: the entry carries `pack_ends_at` and the
   answer is judged against the clock on every hit.
5. Nothing of this is cached in-process: every answer reads Redis (or PostgreSQL).

What Redis must give for this to hold: a tombstone may not be evicted while an entry it guards
lives. Run Redis with `maxmemory-policy noeviction` or `volatile-ttl` (it evicts the entries,
whose TTL is shortest, before tombstones). Do not restore it from an old snapshot (run the cache
without persistence, or delete `buddy:lookup:*` after a restore). If a revoke cannot reach Redis at
all, it still commits (the console must keep working) and is logged; lookups that cannot reach
Redis answer from PostgreSQL. The tombstone is retried by a thread of the revoking process
(`tombstone_retrier`) until Redis takes it, for as long as an entry it guards can live, so a Redis
that was only out of reach (a blip, or unreachable *for the writer* only) hides the entries it
kept as soon as it answers that process again. If that process dies first, an entry filled before
the revoke may answer until it expires (at most the entry TTL).

Without Redis (the embedded default) there is no lookup cache, so there is nothing to guard; the
failure counters then live in the process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import redis
import redis.connection
import redis.exceptions
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

PREFIX = "buddy:lookup:"
# Longer than any cache entry can live (BUDDY_LOOKUP_CACHE_TTL_SECONDS, checked in settings).
TOMBSTONE_TTL_SECONDS = 24 * 3600
USED_SET = f"{PREFIX}used"
# After a Redis error, lookups go straight to PostgreSQL for this long instead of waiting for a
# socket timeout on every request.
BREAKER_SECONDS = 2.0


@cache
def client() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
    )


def entry_name(public_id: str) -> str:
    return f"{PREFIX}e:{public_id}"


def key_tombstone(public_id: str) -> str:
    return f"{PREFIX}tomb:k:{public_id}"


def deployment_tombstone(deployment_id: object) -> str:
    return f"{PREFIX}tomb:d:{deployment_id}"


def deployment_generation(deployment_id: object) -> str:
    return f"{PREFIX}gen:d:{deployment_id}"


def failure_counter(public_id: str) -> str:
    return f"{PREFIX}fail:{public_id}"


# --- the write side's guards --------------------------------------------------------------------


def _set_tombstone(name: str) -> None:
    r = client()
    if r is None:
        return
    try:
        r.set(name, b"1", ex=TOMBSTONE_TTL_SECONDS)
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
                    if r is not None:
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


# --- the read side ------------------------------------------------------------------------------

# One round trip for a hit: the entry, and the guards of the key and of the deployment the entry
# names (the deployment id is the entry's prefix, up to the first "|").
_READ = """
local e = redis.call('GET', KEYS[1])
local kt = redis.call('EXISTS', KEYS[2])
if not e then return {false, kt, 0, false} end
local dep = string.match(e, '^([^|]*)|')
if not dep or dep == '' then return {e, kt, 0, false} end
return {e, kt, redis.call('EXISTS', ARGV[1] .. 'tomb:d:' .. dep),
        redis.call('GET', ARGV[1] .. 'gen:d:' .. dep)}
"""

# The guarded fill: only under the generation read before the database read, and a live entry
# only while neither tombstone exists.
_FILL = """
local g = redis.call('GET', KEYS[4]) or '0'
if g ~= ARGV[3] then return 0 end
if ARGV[4] == '1' and (redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1)
then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

_GUARDS = """
return {redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2]), redis.call('GET', KEYS[3])}
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached lookup answer, as filled from PostgreSQL after an argon2 verification."""

    key_hmac: str
    key_id: str
    deployment_id: str | None
    generation: str
    revoked: bool
    deployment_status: str
    model: str
    endpoint_url: str
    pack_ends_at: float | None  # epoch seconds

    def encode(self) -> str:
        body = json.dumps(
            [
                1,
                self.generation,
                self.key_hmac,
                self.key_id,
                self.revoked,
                self.deployment_status,
                self.model,
                self.endpoint_url,
                self.pack_ends_at,
            ],
            separators=(",", ":"),
        )
        return f"{self.deployment_id or ''}|{body}"

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        try:
            dep, _, body = raw.decode().partition("|")
            fields = json.loads(body)
            if fields[0] != 1 or len(fields) != 9:
                return None
        except (ValueError, UnicodeDecodeError, IndexError, TypeError):
            return None
        _, gen, key_hmac, key_id, revoked, status, model, endpoint, ends = fields
        return cls(key_hmac, key_id, dep or None, gen, revoked, status, model, endpoint, ends)

    @property
    def pack_ends_at_datetime(self) -> datetime | None:
        if self.pack_ends_at is None:
            return None
        return datetime.fromtimestamp(self.pack_ends_at, tz=UTC)


@dataclass(frozen=True, slots=True)
class Guards:
    key_tombstone: bool
    deployment_tombstone: bool
    generation: str

    @property
    def clear(self) -> bool:
        return not (self.key_tombstone or self.deployment_tombstone)


@dataclass(frozen=True, slots=True)
class CachedRead:
    entry: Entry | None
    guards: Guards | None  # None when there is no entry naming a deployment
    key_tombstone: bool


class _Breaker:
    """After a Redis error, skip Redis for a moment (lookups answer from PostgreSQL)."""

    def __init__(self) -> None:
        self.down_until = 0.0

    def available(self) -> redis.Redis | None:
        if time.monotonic() < self.down_until:
            return None
        return client()

    def trip(self, exc: Exception) -> None:
        if time.monotonic() >= self.down_until:
            logger.warning("lookup cache unreachable (%s); answering from PostgreSQL", type(exc))
        self.down_until = time.monotonic() + BREAKER_SECONDS

    def reset(self) -> None:
        self.down_until = 0.0


breaker = _Breaker()


@cache
def _scripts(r: redis.Redis) -> tuple[object, object, object]:
    return r.register_script(_READ), r.register_script(_FILL), r.register_script(_GUARDS)


_READ_SHA = hashlib.sha1(_READ.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


class _HotConnection(threading.local):
    """One Redis connection per thread for the hit path, used without the pool's and the
    command layer's bookkeeping (which cost more CPU than the round trip itself)."""

    conn: redis.connection.AbstractConnection | None = None
    owner: redis.Redis | None = None
    pid: int = 0

    def get(self, r: redis.Redis) -> redis.connection.AbstractConnection:
        if self.conn is None or self.owner is not r or self.pid != _getpid():
            if self.conn is not None and self.pid == _getpid():
                self.conn.disconnect()  # the client was replaced (settings changed)
            pool = r.connection_pool
            self.conn = pool.connection_class(**pool.connection_kwargs)
            self.owner, self.pid = r, _getpid()
        return self.conn

    def evalsha(self, r: redis.Redis, keys: list[str], args: list[str]) -> object:
        conn = self.get(r)
        try:
            try:
                conn.send_command("EVALSHA", _READ_SHA, len(keys), *keys, *args)
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                conn.send_command("SCRIPT", "LOAD", _READ)
                conn.read_response()
                conn.send_command("EVALSHA", _READ_SHA, len(keys), *keys, *args)
                return conn.read_response()
        except redis.RedisError:
            conn.disconnect()
            raise


_hot = _HotConnection()


def read(public_id: str) -> CachedRead | None:
    """The entry of a key and its guards, in one round trip; None if Redis cannot answer."""
    r = breaker.available()
    if r is None:
        return None
    try:
        raw, key_tomb, dep_tomb, gen = _hot.evalsha(  # type: ignore[misc]
            r, [entry_name(public_id), key_tombstone(public_id)], [PREFIX]
        )
    except (redis.RedisError, OSError) as exc:
        breaker.trip(exc)
        return None
    entry = Entry.decode(raw) if raw is not None else None
    guards = None
    if entry is not None and entry.deployment_id is not None:
        guards = Guards(bool(key_tomb), bool(dep_tomb), (gen or b"0").decode())
    return CachedRead(entry=entry, guards=guards, key_tombstone=bool(key_tomb))


def guards(public_id: str, deployment_id: str | None) -> Guards | None:
    """The key's and its deployment's guards, read before a database read that fills an entry."""
    r = breaker.available()
    if r is None:
        return None
    try:
        key_tomb, dep_tomb, gen = _scripts(r)[2](
            keys=[
                key_tombstone(public_id),
                deployment_tombstone(deployment_id or ""),
                deployment_generation(deployment_id or ""),
            ]
        )
    except redis.RedisError as exc:
        breaker.trip(exc)
        return None
    return Guards(bool(key_tomb), bool(dep_tomb), (gen or b"0").decode())


def fill(public_id: str, entry: Entry, *, live: bool) -> bool:
    """Store an entry filled under `entry.generation`; refused if the guards moved meanwhile."""
    r = breaker.available()
    if r is None:
        return False
    dep = entry.deployment_id or ""
    try:
        return bool(
            _scripts(r)[1](
                keys=[
                    entry_name(public_id),
                    key_tombstone(public_id),
                    deployment_tombstone(dep),
                    deployment_generation(dep),
                ],
                args=[
                    entry.encode(),
                    settings.BUDDY_LOOKUP_CACHE_TTL_SECONDS,
                    entry.generation,
                    "1" if live else "0",
                ],
            )
        )
    except redis.RedisError as exc:
        breaker.trip(exc)
        return False


# --- failed verifications (429 rate_limited) -------------------------------------------------


class _LocalCounters:
    """Failure counters of one process, for when there is no Redis (or it cannot answer)."""

    def __init__(self, max_size: int = 100_000) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, tuple[int, float]] = {}
        self.max_size = max_size

    def get(self, public_id: str) -> tuple[int, int]:
        with self.lock:
            count, until = self.counts.get(public_id, (0, 0.0))
        left = until - time.monotonic()
        return (count, int(left) + 1) if left > 0 else (0, 0)

    def add(self, public_id: str, window: int) -> None:
        now = time.monotonic()
        with self.lock:
            count, until = self.counts.get(public_id, (0, 0.0))
            if until <= now:
                count, until = 0, now + window
            if len(self.counts) >= self.max_size:
                self.counts = {k: v for k, v in self.counts.items() if v[1] > now}
            self.counts[public_id] = (count + 1, until)


local_counters = _LocalCounters()


def failures(public_id: str) -> tuple[int, int]:
    """(failed verifications in the current window, seconds until the window ends)."""
    r = breaker.available()
    if r is not None:
        try:
            with r.pipeline(transaction=False) as pipe:
                pipe.get(failure_counter(public_id))
                pipe.ttl(failure_counter(public_id))
                count, ttl = pipe.execute()
            return int(count or 0), max(int(ttl), 1) if count else 0
        except redis.RedisError as exc:
            breaker.trip(exc)
    return local_counters.get(public_id)


def failure_record(public_id: str) -> None:
    window = settings.BUDDY_LOOKUP_FAILURE_WINDOW_SECONDS
    r = breaker.available()
    if r is not None:
        try:
            # MULTI/EXEC: a counter never exists without its expiry (no lockout for good).
            with r.pipeline(transaction=True) as pipe:
                pipe.incr(failure_counter(public_id))
                pipe.expire(failure_counter(public_id), window, nx=True)
                pipe.execute()
            return
        except redis.RedisError as exc:
            breaker.trip(exc)
    local_counters.add(public_id, window)


# --- last use ---------------------------------------------------------------------------------


class _UsageRecorder:
    """Last use of keys, gathered in the process and flushed every few seconds by a thread:
    to the Redis sorted set `used` (beat writes it to the database), or without Redis straight to
    the database (at most one write per key per flush interval)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, float] = {}
        self.pid = 0

    def record(self, public_id: str) -> None:
        now = time.time()
        with self.lock:
            self.pending[public_id] = now
        if self.pid != _getpid():
            self._start()

    def _start(self) -> None:
        with self.lock:
            if self.pid == _getpid():
                return
            self.pid = _getpid()
        threading.Thread(target=self._run, name="buddy-last-used", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(settings.BUDDY_LOOKUP_LAST_USED_LOCAL_FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:
                logger.exception("could not flush last use of keys")

    def take(self) -> dict[str, float]:
        with self.lock:
            pending, self.pending = self.pending, {}
        return pending

    def flush(self) -> int:
        """Hand what was gathered on (Redis, or the database without it); returns how many."""
        pending = self.take()
        if not pending:
            return 0
        r = client()
        if r is not None:
            try:
                r.zadd(USED_SET, pending, gt=True)
                return len(pending)
            except redis.RedisError:
                logger.warning("lookup cache unreachable; writing last use to the database")
        from django.db import connection

        from keys import services

        try:
            return services.key_touch_last_used(used=_as_datetimes(pending))
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()


def _getpid() -> int:
    return os.getpid()


def _as_datetimes(used: dict[str, float]) -> dict[str, datetime]:
    return {pid: datetime.fromtimestamp(ts, tz=UTC) for pid, ts in used.items()}


usage = _UsageRecorder()


def used_take(limit: int = 10_000) -> dict[str, datetime]:
    """Take up to `limit` recorded last uses out of Redis (each is taken exactly once)."""
    r = client()
    if r is None:
        return {}
    with r.pipeline(transaction=True) as pipe:
        pipe.zrange(USED_SET, 0, limit - 1, withscores=True)
        pipe.zremrangebyrank(USED_SET, 0, limit - 1)
        taken, _removed = pipe.execute()
    return _as_datetimes({pid.decode(): ts for pid, ts in taken})


def used_restore(used: dict[str, datetime]) -> None:
    """Put taken last uses back (the database write failed); newer ones already there win."""
    r = client()
    if r is not None and used:
        r.zadd(USED_SET, {pid: at.timestamp() for pid, at in used.items()}, gt=True)


def guard_deletions() -> None:
    """Deleting a key or a deployment (the admin can) is an end too: tombstone it before the
    deleting transaction commits, like a revoke."""
    from django.db.models.signals import pre_delete

    from deployments.models import Deployment
    from keys.models import ApiKey

    def key_deleted(sender: type, instance: ApiKey, **kwargs: object) -> None:
        tombstone_key(instance.public_id)

    def deployment_deleted(sender: type, instance: Deployment, **kwargs: object) -> None:
        tombstone_deployment(instance.pk)

    pre_delete.connect(key_deleted, sender=ApiKey, weak=False, dispatch_uid="lookup-key-deleted")
    pre_delete.connect(
        deployment_deleted, sender=Deployment, weak=False, dispatch_uid="lookup-deployment-deleted"
    )
