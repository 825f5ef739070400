"""Per-key limits: `rate_limit_rpm` (requests answered 200 in the last 60 s) and
`rate_limit_tpm` (tokens recorded in the last 60 s), one shared count per key in Redis for every
web process and gateway replica.

- A hit of a key with limits is counted by the cache's read script itself, in the round trip that
  reads the entry (`cache._READ` with `cache._LIMIT`); a lookup answered from PostgreSQL is
  counted by the same Lua (`cache.count`). Redis's clock is the one clock. A key without limits
  pays nothing for them.
- RPM is a sliding log (a sorted set of the requests of the last 60 s): exact, so no 60 s window
  ever holds more than `rate_limit_rpm` requests answered 200, however many processes answer. A
  request counted and then refused by a later row of the table (`model_mismatch`, an expired key,
  a deployment that is not ready) is taken back (`settle`), so only 200s count.
- TPM sums tokens per second of Redis's clock over the last 60 seconds; the gateway adds a
  request's tokens when it ends (`tokens_spent`), so requests already running when the limit is
  reached still finish (the overshoot is theirs). A request is refused while the window holds
  `rate_limit_tpm` tokens or more.
- Redis unreachable: limits are not enforced (availability over limits) and that is logged once
  per outage; the lookup itself answers from PostgreSQL as always.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import replace

from keys.lookup import cache
from keys.lookup.cache import RateState
from keys.lookup.outcomes import KeySnapshot, LookupOutcome, LookupResult

logger = logging.getLogger(__name__)


class _Outage:
    """Logs "limits not enforced" once per outage: on the first count Redis could not take, and
    again only after a count has succeeded since."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down = False

    def failed(self) -> None:
        with self.lock:
            if self.down:
                return
            self.down = True
        logger.warning("rate limits not enforced: Redis cannot count requests (until it can)")

    def ok(self) -> None:
        if self.down:
            with self.lock:
                if self.down:
                    self.down = False
                    logger.info("rate limits enforced again: Redis counts requests")


outage = _Outage()


def apply(result: LookupResult, rate: RateState | None) -> LookupResult:
    """The lookup's answer once its count is known: a 200 over a limit becomes `429
    rate_limit_exceeded` (the last row of the table, so any other refusal wins); the count rides
    along (for the gateway's headers, and to be taken back by `settle` if the answer is not a
    200). No count (Redis could not answer): the answer stands, unlimited."""
    if rate is None:
        outage.failed()
        return result
    outage.ok()
    if result.ok and not rate.allowed:
        return LookupResult(
            LookupOutcome.RATE_LIMIT_EXCEEDED,
            result.snapshot,
            retry_after=rate.retry_after,
            rate=rate,
        )
    return replace(result, rate=rate)


def count(result: LookupResult, public_id: str) -> LookupResult:
    """Count a 200 that PostgreSQL answered (the miss path) against the key's limits."""
    snapshot = result.snapshot
    if not result.ok or snapshot is None or not snapshot.has_limits:
        return result
    rate = cache.count(public_id, rpm=snapshot.rate_limit_rpm, tpm=snapshot.rate_limit_tpm)
    return apply(result, rate)


def _counted(result: LookupResult) -> str:
    """The RPM member to take back: of a request that was counted but is not answered 200."""
    rate = result.rate
    if result.ok or rate is None or not rate.member or result.snapshot is None:
        return ""
    return rate.member


def settle(result: LookupResult) -> None:
    """Take a refused request's count back (only 200s count)."""
    if member := _counted(result):
        assert result.snapshot is not None
        cache.uncount(result.snapshot.public_id, member)


async def asettle(result: LookupResult) -> None:
    """`settle` from the event loop."""
    if member := _counted(result):
        assert result.snapshot is not None
        await cache.auncount(result.snapshot.public_id, member)


def tokens_spent(*, public_id: str, tokens: int) -> None:
    """Record the tokens a request of this key spent in its TPM window: THE one entry point (the
    gateway, when a request ends; the usage pipeline, for what the proxy reports). Call it only
    for a key with a TPM limit (`KeySnapshot.rate_limit_tpm`): others need no count."""
    if tokens <= 0:
        return
    if not cache.add_tokens(public_id, tokens):
        outage.failed()


async def atokens_spent(*, public_id: str, tokens: int) -> None:
    """`tokens_spent` from the event loop (the gateway), in a worker thread."""
    if tokens > 0:
        await asyncio.to_thread(tokens_spent, public_id=public_id, tokens=tokens)


def headers(snapshot: KeySnapshot | None, rate: RateState | None) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for a key with limits (those of the limits it has)."""
    if snapshot is None or not snapshot.has_limits:
        return {}
    found: dict[str, str] = {}
    if snapshot.rate_limit_rpm is not None:
        left = rate.requests_remaining if rate and rate.requests_remaining is not None else None
        found["x-ratelimit-limit-requests"] = str(snapshot.rate_limit_rpm)
        found["x-ratelimit-remaining-requests"] = str(
            snapshot.rate_limit_rpm if left is None else left
        )
    if snapshot.rate_limit_tpm is not None:
        left = rate.tokens_remaining if rate and rate.tokens_remaining is not None else None
        found["x-ratelimit-limit-tokens"] = str(snapshot.rate_limit_tpm)
        found["x-ratelimit-remaining-tokens"] = str(
            snapshot.rate_limit_tpm if left is None else left
        )
    return found
