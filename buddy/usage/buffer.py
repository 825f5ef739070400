"""The usage buffer: counts gathered in the process (no I/O on the request path), handed to Redis
every few seconds by a thread, and taken out of Redis by beat (`usage.flush`).

In Redis, one hash per UTC hour (`buddy:usage:h:<hour>`, fields `<key id>:<deployment id>:r|p|c`
for requests, prompt and completion tokens, added with HINCRBY) and a set of the hours that have
counts. A flush *claims* each hour's hash by renaming it to a name of its own (new counts start a
new hash meanwhile), adds the claimed counts to the database, then deletes the claimed hash; the
database remembers each claimed name it applied (`buddy.usage.models.AppliedBatch`, in the same
transaction), so a flush that died anywhere in between is finished by the next one and never
counts twice.

While Redis cannot answer, the process keeps its counts and hands them on at the next attempt
(counts are summed per key and hour, so what is kept stays small); a process that is killed loses
what it gathered since its last hand-over (at most `BUDDY_USAGE_LOCAL_FLUSH_SECONDS`).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from django.conf import settings

from buddy.core.background import EveryFewSeconds
from buddy.core.redis import client

logger = logging.getLogger(__name__)

PREFIX = "buddy:usage:"
HOURS_SET = f"{PREFIX}hours"
CLAIMED_SET = f"{PREFIX}claimed"
HOUR_HASH = f"{PREFIX}h:"
CLAIMED_HASH = f"{PREFIX}claimed:"

# Every hour that has counts, renamed to a claimed name; returns every claimed name not yet
# applied (this claim's, and any a crashed flush left). Atomic: a hand-over (MULTI) lands wholly
# before or wholly after it.
_CLAIM = """
local hours = redis.call('SMEMBERS', KEYS[1])
for _, hour in ipairs(hours) do
  local source = ARGV[1] .. hour
  if redis.call('EXISTS', source) == 1 then
    local claimed = ARGV[2] .. hour .. ':' .. ARGV[3]
    redis.call('RENAME', source, claimed)
    redis.call('SADD', KEYS[2], claimed)
  end
  redis.call('SREM', KEYS[1], hour)
end
return redis.call('SMEMBERS', KEYS[2])
"""


@dataclass(frozen=True, slots=True)
class Count:
    """Usage of one key in one UTC hour (`hour` as a Unix time)."""

    key_id: str
    deployment_id: str
    hour: int
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def hour_start(self) -> datetime:
        return datetime.fromtimestamp(self.hour, tz=UTC)


def hour_of(timestamp: float) -> int:
    return int(timestamp // 3600) * 3600


class _Recorder:
    """Counts of this process, summed per (key, deployment, hour) under a lock; a daemon thread
    hands them to Redis every `BUDDY_USAGE_LOCAL_FLUSH_SECONDS`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, str, int], list[int]] = {}
        self.thread = EveryFewSeconds(
            "buddy-usage", self.flush, lambda: settings.BUDDY_USAGE_LOCAL_FLUSH_SECONDS
        )

    def record(
        self, key_id: str, deployment_id: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Count one request (no I/O: a dict update under a lock)."""
        slot = (key_id, deployment_id, hour_of(time.time()))
        with self.lock:
            counts = self.pending.get(slot)
            if counts is None:
                self.pending[slot] = [1, prompt_tokens, completion_tokens]
            else:
                counts[0] += 1
                counts[1] += prompt_tokens
                counts[2] += completion_tokens
        self.thread.ensure_running()

    def take(self) -> dict[tuple[str, str, int], list[int]]:
        with self.lock:
            pending, self.pending = self.pending, {}
        return pending

    def give_back(self, taken: dict[tuple[str, str, int], list[int]]) -> None:
        """Put counts that could not be handed on back (summed with what arrived meanwhile)."""
        with self.lock:
            for slot, (requests, prompt, completion) in taken.items():
                counts = self.pending.setdefault(slot, [0, 0, 0])
                counts[0] += requests
                counts[1] += prompt
                counts[2] += completion

    def flush(self) -> int:
        """Hand what was gathered to Redis; returns how many (key, hour) counts. Kept for the next
        attempt while Redis cannot answer."""
        pending = self.take()
        if not pending:
            return 0
        try:
            buffer_add(
                [
                    Count(key, deployment, hour, *counts)
                    for (key, deployment, hour), counts in pending.items()
                ]
            )
        except redis.RedisError as exc:
            logger.warning("usage buffer unreachable (%s); keeping the counts", type(exc).__name__)
            self.give_back(pending)
            return 0
        except Exception:
            logger.exception("could not hand usage counts to Redis; keeping them")
            self.give_back(pending)
            return 0
        return len(pending)


recorder = _Recorder()
atexit.register(recorder.flush)


def buffer_add(counts: list[Count]) -> None:
    """Add counts to Redis' hourly hashes, all or nothing (one MULTI)."""
    with client().pipeline(transaction=True) as pipe:
        for count in counts:
            name = f"{HOUR_HASH}{count.hour}"
            field = f"{count.key_id}:{count.deployment_id}:"
            if count.requests:
                pipe.hincrby(name, field + "r", count.requests)
            if count.prompt_tokens:
                pipe.hincrby(name, field + "p", count.prompt_tokens)
            if count.completion_tokens:
                pipe.hincrby(name, field + "c", count.completion_tokens)
            pipe.sadd(HOURS_SET, count.hour)
        pipe.execute()


def buffer_claim() -> list[str]:
    """Claim every hour's counts; the claimed names to apply (this claim's and any left over)."""
    r = client()
    claimed = r.eval(_CLAIM, 2, HOURS_SET, CLAIMED_SET, HOUR_HASH, CLAIMED_HASH, uuid.uuid4().hex)
    return sorted(name.decode() if isinstance(name, bytes) else name for name in claimed)


def buffer_read_claimed(name: str) -> list[Count]:
    """The counts of a claimed hash (empty if it is gone)."""
    hour = int(name.removeprefix(CLAIMED_HASH).split(":", 1)[0])
    sums: dict[tuple[str, str], list[int]] = {}
    raw: dict[bytes, bytes] = client().hgetall(name)  # type: ignore[assignment]
    for raw_field, raw_value in raw.items():
        key_id, deployment_id, kind = raw_field.decode().split(":")
        counts = sums.setdefault((key_id, deployment_id), [0, 0, 0])
        counts["rpc".index(kind)] += int(raw_value)
    return [Count(key, deployment, hour, *counts) for (key, deployment), counts in sums.items()]


def buffer_drop_claimed(name: str) -> None:
    """The claimed hash has been applied: delete it."""
    with client().pipeline(transaction=True) as pipe:
        pipe.delete(name)
        pipe.srem(CLAIMED_SET, name)
        pipe.execute()
