"""`key_lookup` from an event loop (the gateway): the hit in one Redis round trip on the loop itself
(the loop's pipelined connection, `cache.aread`); everything else (the ORM, argon2) in the loop's
thread pool.

It takes the very steps of `keys.lookup.selectors.key_lookup` through the same functions:
`presented_key` (parse, HMAC), `cache.aread` (the same Lua script, KEYS/ARGV and decoding as
`cache.read`), `answer_from_cache` (the one judge of a cached read), and `lookup_uncached` for a
miss. So the guarantees of `keys.lookup` hold unchanged: a hit costs no SQL and no argon2, and no
answer outlives a revoke's commit.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from keys.lookup import cache, ratelimit
from keys.lookup.outcomes import LookupResult
from keys.lookup.selectors import (
    PresentedKey,
    answer_from_cache,
    key_lookup,
    lookup_uncached,
    presented_key,
)


def _in_pool_thread_uncached(
    presented: PresentedKey,
    cached: cache.CachedRead | None,
    model: object,
    client_ip: object,
    count: bool,
) -> LookupResult:
    # The pool's threads live as long as the process, each with its own persistent database
    # connection; this gives it the hygiene Django's request signals give a request thread's.
    close_old_connections()
    try:
        result = lookup_uncached(presented, cached, model=model, client_ip=client_ip, count=count)
        ratelimit.settle(result)
        return result
    finally:
        close_old_connections()


def _in_pool_thread(
    authorization: object, model: object, client_ip: object, count: bool
) -> LookupResult:
    close_old_connections()
    try:
        return key_lookup(
            authorization=authorization, model=model, client_ip=client_ip, count=count
        )
    finally:
        close_old_connections()


# thread_sensitive=False: lookups of concurrent requests run in parallel (argon2 releases the GIL)
# instead of queueing on one thread.
_uncached = sync_to_async(_in_pool_thread_uncached, thread_sensitive=False)
_whole = sync_to_async(_in_pool_thread, thread_sensitive=False)


async def key_lookup_async(
    *,
    authorization: object,
    model: object = None,
    client_ip: str | None = None,
    count: bool = True,
) -> LookupResult:
    """`key_lookup`, awaitable: the same answers, a cached one without leaving the event loop.

    `client_ip` is the client's address as the gateway saw it: failed verifications are limited
    per public id and address (`keys.lookup.limits`).
    """
    presented = presented_key(authorization)
    if isinstance(presented, LookupResult):
        return presented
    if not cache.async_read_available():
        # The embedded default's in-process Redis has no socket to await: the sync lookup, whole.
        return await _whole(authorization, model, client_ip, count)
    cached = await cache.aread(presented.public_id, presented.key_hmac, count=count)
    answer = answer_from_cache(presented, cached, model=model, count=count)
    if answer is not None:
        await ratelimit.asettle(answer)
        return answer
    return await _uncached(presented, cached, model, client_ip, count)
