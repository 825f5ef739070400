"""The read side of the lookup cache in Redis: entries, their guards, and the scripts that read and
fill them in one round trip each (the safety argument is in `keys.lookup`'s docstring)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import redis
import redis.connection
import redis.exceptions
from django.conf import settings
from redis.commands.core import Script

from buddy.core.redis import Breaker, cache_client, getpid

logger = logging.getLogger(__name__)

PREFIX = "buddy:lookup:"
# Longer than any cache entry can live (BUDDY_LOOKUP_CACHE_TTL_SECONDS, checked in settings).
TOMBSTONE_TTL_SECONDS = 24 * 3600


def entry_name(public_id: str) -> str:
    return f"{PREFIX}e:{public_id}"


def key_tombstone(public_id: str) -> str:
    return f"{PREFIX}tomb:k:{public_id}"


def deployment_tombstone(deployment_id: object) -> str:
    return f"{PREFIX}tomb:d:{deployment_id}"


def deployment_generation(deployment_id: object) -> str:
    return f"{PREFIX}gen:d:{deployment_id}"


# The epoch: the run id of the Redis process, which changes with every start (a restart, a restore
# from any snapshot or AOF, a failover to another server) and which no data Redis loads can bring
# back. An entry is valid only under the epoch it was filled under (`keys.lookup`'s docstring).
# (The embedded default's in-process Redis has no INFO: its epoch is "", and it cannot be restored.)
_EPOCH = """(function()
  local info = redis.pcall('INFO', 'server')
  return type(info) == 'string' and string.match(info, 'run_id:(%w+)') or ''
end)()"""

# One round trip for a hit: the entry (if filled under this epoch), and the guards of the key and
# of the deployment the entry names (the deployment id is the entry's prefix, up to the first "|";
# the epoch is next, up to the second). KEYS = [entry, key tombstone], ARGV = [prefix]; an entry
# of another epoch is answered as no entry.
_READ = f"""
local e = redis.call('GET', KEYS[1])
local kt = redis.call('EXISTS', KEYS[2])
if not e then return {{false, kt, 0, false}} end
local dep, epoch = string.match(e, '^([^|]*)|([^|]*)|')
if not dep or epoch ~= {_EPOCH} then return {{false, kt, 0, false}} end
if dep == '' then return {{e, kt, 0, false}} end
return {{e, kt, redis.call('EXISTS', ARGV[1] .. 'tomb:d:' .. dep),
        redis.call('GET', ARGV[1] .. 'gen:d:' .. dep)}}
"""

# The guarded fill: only in the epoch and under the generation read before the database read, and
# a live entry only while neither tombstone exists.
_FILL = f"""
if ARGV[5] ~= {_EPOCH} then return 0 end
local g = redis.call('GET', KEYS[4]) or '0'
if g ~= ARGV[3] then return 0 end
if ARGV[4] == '1' and (redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1)
then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

_GUARDS = f"""
return {{redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2]), redis.call('GET', KEYS[3]),
        {_EPOCH}}}
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached lookup answer, as filled from PostgreSQL after an argon2 verification."""

    key_hmac: str
    key_id: str
    deployment_id: str | None
    epoch: str
    generation: str
    revoked: bool
    deployment_status: str
    model: str
    endpoint_url: str
    pack_ends_at: float | None  # epoch seconds

    def encode(self) -> str:
        body = json.dumps(
            [
                2,
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
        return f"{self.deployment_id or ''}|{self.epoch}|{body}"

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        try:
            dep, epoch, body = raw.decode().split("|", 2)
            fields = json.loads(body)
            if fields[0] != 2 or len(fields) != 9:
                return None
        except (ValueError, UnicodeDecodeError, IndexError, TypeError):
            return None
        _, gen, key_hmac, key_id, revoked, status, model, endpoint, ends = fields
        return cls(
            key_hmac, key_id, dep or None, epoch, gen, revoked, status, model, endpoint, ends
        )

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
    epoch: str = ""  # of the Redis that answered (read before the database; a fill carries it)

    @property
    def clear(self) -> bool:
        return not (self.key_tombstone or self.deployment_tombstone)


@dataclass(frozen=True, slots=True)
class CachedRead:
    entry: Entry | None
    guards: Guards | None  # None when there is no entry naming a deployment
    key_tombstone: bool


# After a Redis error, lookups go straight to PostgreSQL for this long instead of waiting for a
# socket timeout on every request.
breaker = Breaker("lookup cache", seconds=2.0, connect=cache_client)


@cache
def _scripts(r: redis.Redis) -> tuple[Script, Script, Script]:
    return r.register_script(_READ), r.register_script(_FILL), r.register_script(_GUARDS)


_READ_SHA = hashlib.sha1(_READ.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


class _HotConnection(threading.local):
    """One Redis connection per thread for the hit path, used without the pool's and the
    command layer's bookkeeping (which cost more CPU than the round trip itself). It is made by
    the client's own connection class, so the embedded default's in-process Redis (fakeredis,
    whose connections speak the same `send_command`/`read_response`) takes this path too."""

    conn: redis.connection.AbstractConnection | None = None
    owner: redis.Redis | None = None
    pid: int = 0

    def get(self, r: redis.Redis) -> redis.connection.AbstractConnection:
        if self.conn is None or self.owner is not r or self.pid != getpid():
            if self.conn is not None and self.pid == getpid():
                self.conn.disconnect()  # the client was replaced (settings changed)
            pool = r.connection_pool
            self.conn = pool.connection_class(**pool.connection_kwargs)
            self.owner, self.pid = r, getpid()
        return self.conn

    def evalsha(self, r: redis.Redis, keys: list[str], args: list[str]) -> Any:
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
        raw, key_tomb, dep_tomb, gen = _hot.evalsha(
            r, [entry_name(public_id), key_tombstone(public_id)], [PREFIX]
        )
    except (redis.RedisError, OSError) as exc:
        breaker.trip(exc)
        return None
    entry = Entry.decode(raw) if raw is not None else None
    guards = None
    if entry is not None and entry.deployment_id is not None:
        # The script answered the entry only under the current epoch, so it is the guards' too.
        guards = Guards(bool(key_tomb), bool(dep_tomb), (gen or b"0").decode(), entry.epoch)
    return CachedRead(entry=entry, guards=guards, key_tombstone=bool(key_tomb))


def guards(public_id: str, deployment_id: str | None) -> Guards | None:
    """The key's and its deployment's guards, read before a database read that fills an entry."""
    r = breaker.available()
    if r is None:
        return None
    try:
        key_tomb, dep_tomb, gen, epoch = _scripts(r)[2](
            keys=[
                key_tombstone(public_id),
                deployment_tombstone(deployment_id or ""),
                deployment_generation(deployment_id or ""),
            ]
        )
    except redis.RedisError as exc:
        breaker.trip(exc)
        return None
    return Guards(bool(key_tomb), bool(dep_tomb), (gen or b"0").decode(), epoch.decode())


@cache
def _warn_no_epoch() -> None:
    logger.error(
        "the lookup cache's Redis does not answer INFO (its run id): nothing is cached; "
        "allow INFO to buddy's Redis user (README, Production)"
    )


def fill(public_id: str, entry: Entry, *, live: bool) -> bool:
    """Store an entry filled under `entry.generation`; refused if the guards moved meanwhile."""
    r = breaker.available()
    if r is None:
        return False
    if not entry.epoch and not settings.EMBEDDED:
        # A server Redis that did not tell its run id (INFO denied to buddy's user) cannot prove a
        # later restart: fail closed, every lookup verifies against PostgreSQL.
        _warn_no_epoch()
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
                    entry.epoch,
                ],
            )
        )
    except redis.RedisError as exc:
        breaker.trip(exc)
        return False
