"""The read side of the lookup cache in Redis: entries, their guards, and the scripts that read and
fill them in one round trip each (the safety argument is in `keys.lookup`'s docstring)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import hiredis
import redis
import redis.connection
import redis.exceptions
from django.conf import settings
from redis.commands.core import Script

from buddy.core.conf import per_settings
from buddy.core.redis import Breaker, cache_client, cache_url, getpid

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


def key_generation(public_id: str) -> str:
    """The key's own generation, bumped before and after the commit of a change of what its
    entry holds of it (expiry, limits: `keys.services.key_update`, `key_roll`)."""
    return f"{PREFIX}gen:k:{public_id}"


def rpm_window(public_id: str) -> str:
    """The key's requests of the last 60 s: a sorted set, one member per request answered 200
    (score: Redis's clock, microseconds)."""
    return f"{PREFIX}rl:r:{public_id}"


def tpm_window(public_id: str) -> str:
    """The key's tokens of the last 60 s: a hash, Redis's clock second -> tokens recorded in it."""
    return f"{PREFIX}rl:t:{public_id}"


# The epoch: the run id of the Redis process, which changes with every start (a restart, a restore
# from any snapshot or AOF, a failover to another server) and which no data Redis loads can bring
# back. An entry is valid only under the epoch it was filled under (`keys.lookup`'s docstring).
# (The embedded default's in-process Redis has no INFO: its epoch is "", and it cannot be restored.)
_EPOCH = """(function()
  local info = redis.pcall('INFO', 'server')
  return type(info) == 'string' and string.match(info, 'run_id:(%w+)') or ''
end)()"""

# The per-key limits (`keys.lookup.ratelimit`), as one Lua function shared by the read script (a
# hit of a key with limits is counted in the very round trip that reads it) and the count script
# (a lookup answered from PostgreSQL). Redis's clock is the one clock of every process.
# RPM: a sliding log, exact: a request is refused while the last 60 s already hold `rpm` counted
# requests; otherwise it is added (when `count`). TPM: tokens per second of Redis's clock, summed
# over the last 60 seconds; a request is refused while they reach `tpm`. Returns
# {allowed (1|0), requests left (-1: no RPM limit), tokens left (-1: no TPM limit),
#  Retry-After in seconds (0 when allowed), the counted member ('' when none)}.
_LIMIT = """
local function limit(rk, tk, rpm, tpm, count, nonce)
  local t = redis.call('TIME')
  local sec = tonumber(t[1])
  local now = sec * 1000000 + tonumber(t[2])
  local retry = 0
  local tleft = -1
  if tpm ~= '' then
    local cap = tonumber(tpm)
    local raw = redis.call('HGETALL', tk)
    local used, stale, live = 0, {}, {}
    for i = 1, #raw, 2 do
      local s = tonumber(raw[i])
      if s <= sec - 60 then stale[#stale + 1] = raw[i]
      else
        local n = tonumber(raw[i + 1])
        used = used + n
        live[#live + 1] = {s, n}
      end
    end
    if #stale > 0 then redis.call('HDEL', tk, unpack(stale)) end
    tleft = cap - used
    if tleft <= 0 then
      table.sort(live, function(a, b) return a[1] < b[1] end)
      local over = used
      for _, b in ipairs(live) do
        over = over - b[2]
        retry = b[1] + 60 - sec
        if over < cap then break end
      end
      tleft = 0
    end
  end
  local rleft = -1
  local n = 0
  if rpm ~= '' then
    local cap = tonumber(rpm)
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', string.format('%d', now - 60000000))
    n = redis.call('ZCARD', rk)
    rleft = cap - n
    if rleft <= 0 then
      local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
      local wait = math.ceil((tonumber(first[2]) + 60000000 - now) / 1000000)
      if wait > retry then retry = wait end
      rleft = 0
    end
  end
  if rleft == 0 or tleft == 0 then
    if retry < 1 then retry = 1 end
    return {0, rleft, tleft, retry, ''}
  end
  local member = ''
  if rpm ~= '' and count == '1' then
    member = string.format('%d', now) .. ':' .. nonce
    redis.call('ZADD', rk, string.format('%d', now), member)
    redis.call('PEXPIRE', rk, 61000)
    rleft = rleft - 1
  end
  return {1, rleft, tleft, 0, member}
end
"""

# One round trip for a hit: the entry (if filled under this epoch), and the guards of the key and
# of the deployment the entry names (the deployment id is the entry's prefix, up to the first "|";
# the epoch is next, then the generation, the key's HMAC and its limits: `Entry.encode`). An entry
# of another epoch is answered as no entry. A fresh entry (guards clear, same generation) of a
# key with limits whose HMAC is the presented key's is counted here too (`_LIMIT`); a key without
# limits pays nothing for them. Only the holder of the key itself is counted (its HMAC is the
# entry's): someone who knows a public id (it is no secret) cannot spend its owner's limit. The
# comparison is Lua's `==`, which for Lua's interned strings is an identity check, not a
# byte-by-byte scan, and both sides are HMACs under the server's pepper; the answer itself is
# still decided by `hmac.compare_digest` in Python.
# KEYS = [entry, key tombstone, key generation, RPM window, TPM window],
# ARGV = [prefix, presented HMAC, count ('1'|'0'), nonce].
_READ = f"""{_LIMIT}
local e = redis.call('GET', KEYS[1])
local kt = redis.call('EXISTS', KEYS[2])
if not e then return {{false, kt, 0, false, false}} end
local dep, epoch, gen, h, rpm, tpm =
  string.match(e, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|')
if not dep or epoch ~= {_EPOCH} then return {{false, kt, 0, false, false}} end
if dep == '' then return {{e, kt, 0, false, false}} end
local dt = redis.call('EXISTS', ARGV[1] .. 'tomb:d:' .. dep)
local g = (redis.call('GET', ARGV[1] .. 'gen:d:' .. dep) or '0') .. '.' ..
  (redis.call('GET', KEYS[3]) or '0')
local rl = false
if (rpm ~= '' or tpm ~= '') and ARGV[3] == '1' and kt == 0 and dt == 0 and g == gen
  and h == ARGV[2] then
  rl = limit(KEYS[4], KEYS[5], rpm, tpm, '1', ARGV[4])
end
return {{e, kt, dt, g, rl}}
"""

# The count of a lookup answered from PostgreSQL. KEYS = [RPM window, TPM window],
# ARGV = [rpm limit or '', tpm limit or '', nonce].
_COUNT = f"""{_LIMIT}
return limit(KEYS[1], KEYS[2], ARGV[1], ARGV[2], '1', ARGV[3])
"""

# Tokens a request spent, added to the second of Redis's clock. KEYS = [TPM window], ARGV = [n].
_TOKENS = """
local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], t[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""

# The generation an entry is filled under and checked against: the deployment's and the key's.
_GENERATION = (
    """(redis.call('GET', KEYS[4]) or '0') .. '.' .. (redis.call('GET', KEYS[5]) or '0')"""
)

# The guarded fill: only in the epoch and under the generation read before the database read, and
# a live entry only while neither tombstone exists.
# KEYS = [entry, key tombstone, deployment tombstone, deployment generation, key generation].
_FILL = f"""
if ARGV[5] ~= {_EPOCH} then return 0 end
if {_GENERATION} ~= ARGV[3] then return 0 end
if ARGV[4] == '1' and (redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1)
then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS = [key tombstone, deployment tombstone, -, deployment generation, key generation].
_GUARDS = f"""
return {{redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2]), {_GENERATION},
        {_EPOCH}}}
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached lookup answer, as filled from PostgreSQL after an argon2 verification.

    Layout: `<deployment id>|<epoch>|<generation>|<key HMAC>|<rpm>|<tpm>|<JSON>`: what the read
    script needs is in front (a limit is "" when the key has none), the rest in the JSON. An
    entry of another layout (v1's `<deployment id>|<epoch>|[2,...]`) reads as no entry."""

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
    expires_at: float | None = None  # epoch seconds
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None

    def encode(self) -> str:
        body = json.dumps(
            [
                3,
                self.key_id,
                self.revoked,
                self.deployment_status,
                self.model,
                self.endpoint_url,
                self.pack_ends_at,
                self.expires_at,
            ],
            separators=(",", ":"),
        )
        rpm = "" if self.rate_limit_rpm is None else str(self.rate_limit_rpm)
        tpm = "" if self.rate_limit_tpm is None else str(self.rate_limit_tpm)
        head = f"{self.deployment_id or ''}|{self.epoch}|{self.generation}|{self.key_hmac}"
        return f"{head}|{rpm}|{tpm}|{body}"

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        try:
            dep, epoch, gen, key_hmac, rpm, tpm, body = raw.decode().split("|", 6)
            fields = json.loads(body)
            if not isinstance(fields, list) or len(fields) != 8 or fields[0] != 3:
                return None
            _, key_id, revoked, status, model, endpoint, ends, expires = fields
            return cls(
                key_hmac,
                key_id,
                dep or None,
                epoch,
                gen,
                revoked,
                status,
                model,
                endpoint,
                ends,
                expires,
                int(rpm) if rpm else None,
                int(tpm) if tpm else None,
            )
        except (ValueError, UnicodeDecodeError, IndexError, TypeError):
            return None

    @property
    def pack_ends_at_datetime(self) -> datetime | None:
        return _datetime(self.pack_ends_at)

    @property
    def expires_at_datetime(self) -> datetime | None:
        return _datetime(self.expires_at)

    @property
    def has_limits(self) -> bool:
        return self.rate_limit_rpm is not None or self.rate_limit_tpm is not None


def _datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)


@dataclass(frozen=True, slots=True)
class RateState:
    """What the limits said of one request (`_LIMIT`'s reply): allowed or not, what is left of
    each limit (None: the key has no such limit), when to retry, and the member that counted it
    (to take back if the lookup refuses the request after all)."""

    allowed: bool
    requests_remaining: int | None
    tokens_remaining: int | None
    retry_after: int
    member: str

    @classmethod
    def of_reply(cls, reply: Any) -> RateState:
        allowed, rleft, tleft, retry, member = reply
        return cls(
            bool(allowed),
            None if rleft < 0 else int(rleft),
            None if tleft < 0 else int(tleft),
            int(retry),
            member.decode() if isinstance(member, bytes) else str(member),
        )


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
    rate: RateState | None = None  # the hit's count, for a fresh entry of a key with limits


# After a Redis error, lookups go straight to PostgreSQL for this long instead of waiting for a
# socket timeout on every request.
breaker = Breaker("lookup cache", seconds=2.0, connect=cache_client)


@cache
def _scripts(r: redis.Redis) -> tuple[Script, Script, Script, Script, Script]:
    return (
        r.register_script(_READ),
        r.register_script(_FILL),
        r.register_script(_GUARDS),
        r.register_script(_COUNT),
        r.register_script(_TOKENS),
    )


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


def read_keys_args(public_id: str, key_hmac: str, count: bool) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of the read script (`_READ`) for a key: one definition for both the sync
    read and the async one (`aread`). `count`: a fresh hit of a key with limits counts."""
    keys = [
        entry_name(public_id),
        key_tombstone(public_id),
        key_generation(public_id),
        rpm_window(public_id),
        tpm_window(public_id),
    ]
    return keys, [PREFIX, key_hmac, "1" if count else "0", nonce() if count else ""]


class _Nonces:
    """Random per process (drawn again in a forked child), then a counter: unique across
    processes without a system call per lookup."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count()


_nonces = _Nonces()
os.register_at_fork(after_in_child=_nonces.renew)


def nonce() -> str:
    """What makes a counted request's member of the RPM window unique (with Redis's clock)."""
    return f"{_nonces.prefix}{next(_nonces.counter):x}"


class _Decoded:
    """Entries decoded from the bytes Redis returned, by those bytes: the same bytes come back on
    every hit of a key until its entry changes, and an `Entry` is immutable, so a hit decodes
    nothing again (~3 us). Bounded: emptied when full."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.entries: dict[bytes, Entry | None] = {}

    def entry(self, raw: bytes) -> Entry | None:
        try:
            return self.entries[raw]
        except KeyError:
            pass
        entry = Entry.decode(raw)
        if len(self.entries) >= self.LIMIT:
            self.entries.clear()
        self.entries[raw] = entry
        return entry


decoded = _Decoded()


def decode_read(reply: Any) -> CachedRead:
    """The read script's reply, as the lookup judges it (shared by `read` and `aread`)."""
    raw, key_tomb, dep_tomb, gen, rate = reply
    entry = decoded.entry(raw) if raw is not None else None
    guards = None
    if entry is not None and entry.deployment_id is not None:
        # The script answered the entry only under the current epoch, so it is the guards' too.
        guards = Guards(bool(key_tomb), bool(dep_tomb), (gen or b"0.0").decode(), entry.epoch)
    return CachedRead(
        entry=entry,
        guards=guards,
        key_tombstone=bool(key_tomb),
        rate=RateState.of_reply(rate) if rate else None,
    )


def read(public_id: str, key_hmac: str = "", *, count: bool = False) -> CachedRead | None:
    """The entry of a key and its guards, in one round trip; None if Redis cannot answer."""
    r = breaker.available()
    if r is None:
        return None
    try:
        reply = _hot.evalsha(r, *read_keys_args(public_id, key_hmac, count))
    except (redis.RedisError, OSError) as exc:
        breaker.trip(exc)
        return None
    return decode_read(reply)


# --- the async read (the gateway's event loop) -------------------------------------------------


class _AsyncClients:
    """One `redis.asyncio` client per event loop (its connections belong to the loop that made
    them), on the same server and database as the sync client. None in the embedded default,
    whose in-process Redis has no sockets: the caller takes the sync path in a thread."""

    def __init__(self) -> None:
        self.clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        found = self.clients.get(loop)
        if found is None:
            import redis.asyncio

            found = redis.asyncio.Redis.from_url(
                cache_url(), socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self.clients[loop] = found
        return found

    async def close(self) -> None:
        """Close this event loop's client (for loops that end with their request)."""
        found = self.clients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.aclose()


_async_clients = _AsyncClients()


async def aclose() -> None:
    """Close the async read's client of the running event loop."""
    await _async_clients.close()


@per_settings
def async_read_available() -> bool:
    """Whether `aread` can talk to Redis from the event loop (not in the embedded default)."""
    return not settings.EMBEDDED


class _Pipelined(asyncio.Protocol):
    """One Redis connection per event loop for the async hit path, shared by every request on the
    loop: commands are written as they come and replies, which Redis sends in the same order, are
    handed back in that order (hiredis parses them). This is `_HotConnection`'s idea for the event
    loop: `redis.asyncio`'s pool, retry and command layers cost more CPU than the round trip.
    Plain TCP or Unix sockets only; a `rediss://` URL takes `redis.asyncio` (`_async_clients`).

    A reply not back within `_ASYNC_TIMEOUT` of its command fails it and every command waiting
    behind it with `TimeoutError`, and closes the connection (replies come in order: a stalled
    reply stalls them all); the next command makes a new one. One timer per connection watches
    the oldest command, instead of a timeout per command (measured at ~5 us a lookup)."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        # Each command's waiter and the loop time by which its reply is due, oldest first.
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.url = ""  # of the server it was made for
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter, _due = self.waiting.popleft()
            if not waiter.done():  # a caller that was cancelled has gone: its reply is dropped
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_all(redis.exceptions.ConnectionError("Redis connection lost"))

    def _fail_all(self, exc: Exception) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            waiter, _due = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    def call(self, *args: str | int) -> asyncio.Future[Any]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self.waiting.append((waiter, loop.time() + _ASYNC_TIMEOUT))
        self.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        if self.watchdog is None:
            self.watchdog = loop.call_later(_ASYNC_TIMEOUT, self._watch, loop)
        return waiter

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self.watchdog = None
        if not self.waiting:
            return
        late = self.waiting[0][1] - loop.time()
        if late > 0:  # the oldest command is not due yet: look again when it is
            self.watchdog = loop.call_later(late, self._watch, loop)
            return
        self._fail_all(TimeoutError(f"Redis did not answer within {_ASYNC_TIMEOUT:g} s"))
        if self.transport is not None:
            self.transport.abort()  # replies still on their way belong to failed commands


class _AsyncHotConnection:
    """The loop's `_Pipelined` connection, (re)made on first use after a loss."""

    def __init__(self) -> None:
        self.connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pipelined] = (
            weakref.WeakKeyDictionary()
        )
        self.connecting: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Future[_Pipelined]
        ] = weakref.WeakKeyDictionary()

    def ready(self) -> _Pipelined | None:
        """The loop's connection if it is up and still for the configured server (no await)."""
        found = self.connections.get(asyncio.get_running_loop())
        if found is not None and found.transport is not None and found.url == cache_url():
            return found
        return None

    async def get(self) -> _Pipelined:
        found = self.ready()
        if found is not None:
            return found
        loop = asyncio.get_running_loop()
        stale = self.connections.get(loop)
        if stale is not None and stale.transport is not None:
            stale.transport.close()  # the settings moved the cache to another server
        pending = self.connecting.get(loop)
        if pending is None:
            pending = self.connecting[loop] = asyncio.ensure_future(self._connect(loop))
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self.connecting.pop(loop, None)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Pipelined:
        where = cache_url()
        url = redis.connection.parse_url(where)
        async with asyncio.timeout(_ASYNC_TIMEOUT):
            if "path" in url:
                _, protocol = await loop.create_unix_connection(_Pipelined, url["path"])
            else:
                _, protocol = await loop.create_connection(
                    _Pipelined, url.get("host", "localhost"), url.get("port", 6379)
                )
            setup = []
            if url.get("password"):
                auth = [url["username"]] if url.get("username") else []
                setup.append(protocol.call("AUTH", *auth, url["password"]))
            if url.get("db"):
                setup.append(protocol.call("SELECT", url["db"]))
            for reply in await asyncio.gather(*setup):
                if isinstance(reply, hiredis.ReplyError):
                    assert protocol.transport is not None
                    protocol.transport.close()
                    raise redis.exceptions.ConnectionError(f"Redis refused the set-up: {reply}")
        protocol.url = where
        self.connections[loop] = protocol
        return protocol

    async def call(self, *args: str | int) -> Any:
        """One command on the loop's connection (its reply within `_ASYNC_TIMEOUT`, or
        `TimeoutError`)."""
        connection = self.ready() or await self.get()
        return await connection.call(*args)

    async def evalsha(self, keys: list[str], args: list[str]) -> Any:
        reply = await self.call("EVALSHA", _READ_SHA, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            await self.call("SCRIPT", "LOAD", _READ)
            reply = await self.call("EVALSHA", _READ_SHA, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError):
            raise redis.exceptions.ResponseError(str(reply))
        return reply


# The sync client's socket timeout (`buddy.core.redis.client`): a Redis slower than this trips
# the breaker, and lookups answer from PostgreSQL meanwhile.
_ASYNC_TIMEOUT = 0.5
_async_hot = _AsyncHotConnection()


async def aread(public_id: str, key_hmac: str = "", *, count: bool = False) -> CachedRead | None:
    """`read` from the event loop: the same script, KEYS/ARGV and decoding, one round trip;
    None if Redis cannot answer (the breaker is shared with `read`)."""
    if breaker.is_open:
        return None
    keys, args = read_keys_args(public_id, key_hmac, count)
    try:
        if cache_url().startswith("rediss:"):
            r = _async_clients.get()
            try:
                reply = await r.evalsha(_READ_SHA, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await r.script_load(_READ)
                reply = await r.evalsha(_READ_SHA, len(keys), *keys, *args)
        else:
            reply = await _async_hot.evalsha(keys, args)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        breaker.trip(exc)
        return None
    return decode_read(reply)


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
                "",
                deployment_generation(deployment_id or ""),
                key_generation(public_id),
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
                    key_generation(public_id),
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


def count(public_id: str, *, rpm: int | None, tpm: int | None) -> RateState | None:
    """Count a request of a key with limits that PostgreSQL answered (`_COUNT`, the read script's
    very rules); None if Redis cannot answer."""
    r = breaker.available()
    if r is None:
        return None
    try:
        reply = _scripts(r)[3](
            keys=[rpm_window(public_id), tpm_window(public_id)],
            args=["" if rpm is None else rpm, "" if tpm is None else tpm, nonce()],
        )
    except redis.RedisError as exc:
        breaker.trip(exc)
        return None
    return RateState.of_reply(reply)


def uncount(public_id: str, member: str) -> None:
    """Take a counted request back out of the RPM window (the lookup refused it after all)."""
    r = breaker.available()
    if r is None:
        return
    try:
        r.zrem(rpm_window(public_id), member)
    except redis.RedisError as exc:
        breaker.trip(exc)


async def auncount(public_id: str, member: str) -> None:
    """`uncount` from the event loop."""
    if breaker.is_open or not async_read_available():
        uncount(public_id, member)
        return
    try:
        if cache_url().startswith("rediss:"):
            await _async_clients.get().zrem(rpm_window(public_id), member)
        else:
            await _async_hot.call("ZREM", rpm_window(public_id), member)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        breaker.trip(exc)


def add_tokens(public_id: str, tokens: int) -> bool:
    """Add tokens to the key's TPM window (`_TOKENS`); False if Redis cannot answer."""
    r = breaker.available()
    if r is None:
        return False
    try:
        _scripts(r)[4](keys=[tpm_window(public_id)], args=[tokens])
    except redis.RedisError as exc:
        breaker.trip(exc)
        return False
    return True
