"""The proxy's lookup: which deployment does a presented key route to.

It answers with one row of the contract's lookup table. It refuses a malformed key before any I/O,
answers a cached key from one Redis round trip, and otherwise finds the key by its public id,
verifies it with one argon2 check, and judges the key and its deployment as they are now (a pack
that has ended is refused even before the expiry sweep has terminated it).
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from buddy.core.conf import per_settings
from buddy.core.credentials import bearer_token
from keys import hashing, tokens
from keys.lookup import cache, limits, ratelimit, usage
from keys.lookup.outcomes import (
    KeySnapshot,
    LookupOutcome,
    LookupResult,
    is_permanent_refusal,
    judge,
)
from keys.models import ApiKey


def key_snapshot(key: ApiKey) -> KeySnapshot:
    deployment = key.deployment
    return KeySnapshot(
        key_id=str(key.pk),
        public_id=key.public_id,
        revoked=key.revoked_at is not None,
        deployment_id=str(deployment.pk) if deployment else None,
        deployment_status=deployment.status if deployment else "",
        model=deployment.model_id if deployment else "",
        endpoint_url=deployment.endpoint_url if deployment else "",
        pack_ends_at=deployment.pack_ends_at if deployment else None,
        expires_at=key.expires_at,
        rate_limit_rpm=key.rate_limit_rpm,
        rate_limit_tpm=key.rate_limit_tpm,
    )


def key_cache_hmac(plaintext: str) -> str:
    """What a cache entry holds to recognise the full key: HMAC-SHA256 under the server's pepper."""
    return hmac.digest(_pepper(), plaintext.encode(), "sha256").hex()


@per_settings
def _pepper() -> bytes:
    return str(settings.BUDDY_LOOKUP_CACHE_PEPPER).encode()


def _snapshot_of_entry(public_id: str, entry: cache.Entry) -> KeySnapshot:
    """The snapshot a cached entry stands for (made once per decoded entry: both are immutable,
    and `cache.decoded` hands the same entry back for the same bytes)."""
    found = _snapshots.get(id(entry))
    if found is not None and found[0] is entry and found[1].public_id == public_id:
        return found[1]
    snapshot = _new_snapshot_of_entry(public_id, entry)
    if len(_snapshots) >= cache.decoded.LIMIT:
        _snapshots.clear()
    # The entry itself is kept with its snapshot, so its id cannot be reused while it is here.
    _snapshots[id(entry)] = (entry, snapshot)
    return snapshot


_snapshots: dict[int, tuple[cache.Entry, KeySnapshot]] = {}


def _new_snapshot_of_entry(public_id: str, entry: cache.Entry) -> KeySnapshot:
    return KeySnapshot(
        key_id=entry.key_id,
        public_id=public_id,
        revoked=entry.revoked,
        deployment_id=entry.deployment_id,
        deployment_status=entry.deployment_status,
        model=entry.model,
        endpoint_url=entry.endpoint_url,
        pack_ends_at=entry.pack_ends_at_datetime,
        expires_at=entry.expires_at_datetime,
        rate_limit_rpm=entry.rate_limit_rpm,
        rate_limit_tpm=entry.rate_limit_tpm,
    )


def _verify(
    public_id: str, plaintext: str, client_ip: str
) -> tuple[ApiKey | None, LookupOutcome | None, int]:
    """The key row if the plaintext verifies; else the refusal and its Retry-After.

    A malformed key never gets here; an unknown public id costs one indexed query and no argon2.
    Failures are counted per public id and client address, so one address's wrong guesses never
    make the key's owner at another address wait.
    """
    key = (
        ApiKey.objects.filter(public_id=public_id)
        .only("pk", "public_id", "secret_hash", "deployment_id")
        .first()
    )
    if key is None:
        return None, LookupOutcome.INVALID_API_KEY, 0
    failed, retry_after = limits.failures(public_id, client_ip)
    if failed >= settings.BUDDY_LOOKUP_FAILURE_LIMIT:
        return None, LookupOutcome.RATE_LIMITED, retry_after
    slots = limits.verify_slots.get()
    if not slots.acquire(timeout=settings.BUDDY_LOOKUP_VERIFY_WAIT_SECONDS):
        # Every verification slot stayed busy: refuse rather than queue without bound.
        return None, LookupOutcome.RATE_LIMITED, 1
    try:
        ok = hashing.verify_key(key.secret_hash, plaintext)
    finally:
        slots.release()
    if not ok:
        limits.failure_record(public_id, client_ip)
        return None, LookupOutcome.INVALID_API_KEY, 0
    return key, None, 0


def _fresh_snapshot(key_pk: uuid.UUID | str) -> KeySnapshot | None:
    key = (
        ApiKey.objects.select_related("deployment")
        .only(
            "pk",
            "public_id",
            "revoked_at",
            "expires_at",
            "rate_limit_rpm",
            "rate_limit_tpm",
            "deployment__id",
            "deployment__status",
            "deployment__model_id",
            "deployment__endpoint_url",
            "deployment__pack_ends_at",
        )
        .filter(pk=key_pk)
        .first()
    )
    return None if key is None else key_snapshot(key)


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A well-formed key as presented: its public id, plaintext and cache HMAC."""

    public_id: str
    plaintext: str
    key_hmac: str


def presented_key(authorization: object) -> PresentedKey | LookupResult:
    """Step 1 of `key_lookup` (no I/O): the key, or the refusal of a missing or malformed one."""
    credential = bearer_token(authorization)
    if credential is None:
        return LookupResult(LookupOutcome.MISSING_API_KEY)
    try:
        parsed = tokens.parse(credential)
    except tokens.MalformedKey:
        return LookupResult(LookupOutcome.INVALID_API_KEY)
    return PresentedKey(parsed.public_id, parsed.plaintext, key_cache_hmac(parsed.plaintext))


def answer_from_cache(
    presented: PresentedKey, cached: cache.CachedRead | None, *, model: object, count: bool = True
) -> LookupResult | None:
    """Step 2 of `key_lookup`, pure: the answer a cache read gives on its own (an entry whose HMAC
    matches the key, with clear guards of its generation, or a permanent refusal), or None when
    the key must be verified or read from the database (`lookup_uncached`). The sync and the
    async lookup both judge a read here: one set of rules. Expiry is judged against the clock on
    every hit; a fresh hit of a key with limits was counted by the read (`cached.rate`), and a
    200 over a limit answers `rate_limit_exceeded` (`ratelimit.apply`; a refusal's count is
    taken back by the caller: `ratelimit.settle`)."""
    entry = cached.entry if cached is not None else None
    if entry is None or not hmac.compare_digest(entry.key_hmac, presented.key_hmac):
        return None
    assert cached is not None
    from_cache = _snapshot_of_entry(presented.public_id, entry)
    guards = cached.guards
    fresh = guards is not None and guards.clear and guards.generation == entry.generation
    # A permanent refusal answers whatever the guards say, but for a 409 of an ended deployment
    # (an entry of before its keys were revoked in the end) once the key has a tombstone: its
    # revocation has committed, and the answer is now 401.
    permanent = is_permanent_refusal(from_cache) and (
        from_cache.revoked or not cached.key_tombstone
    )
    if not (fresh or permanent):
        return None
    result = LookupResult(judge(from_cache, model=model, now=timezone.now()), from_cache)
    if fresh and count and entry.has_limits:
        if cached.rate is None:  # not counted by the read: the database path counts it
            return None
        result = ratelimit.apply(result, cached.rate)
    if result.ok:
        usage.recorder.record(presented.public_id)
    return result


def key_lookup(
    *, authorization: object, model: object = None, client_ip: object = None, count: bool = True
) -> LookupResult:
    """The proxy's lookup: the one entry point every caller (internal API, gateway) uses.

    1. Parse and checksum the key (no I/O): malformed answers 401 at once.
    2. One Redis round trip (`cache.read`): the key's entry and its guards. An entry whose
       HMAC matches the presented key identifies it without argon2; if the guards are clear (no
       tombstone, same generation) it also answers without SQL.
    3. Otherwise the key is verified (once per cache lifetime: argon2 under a rate limit and a
       bound on concurrent verifications), the guards are read, *then* the database, and the
       answer is filled into the cache only if the guards have not moved (see `keys.lookup`).
    With Redis unreachable, every lookup takes step 3 against PostgreSQL alone.
    The gateway's `keys.lookup.aio.key_lookup_async` takes the same three steps from its event loop.

    `client_ip` is the end client's address as the proxy saw it (ignored unless a valid IP): the
    failed-verification limit counts per public id and address. `count=False` judges the key
    without counting the request against its limits (a running stream's recheck).
    """
    presented = presented_key(authorization)
    if isinstance(presented, LookupResult):
        return presented
    cached = cache.read(presented.public_id, presented.key_hmac, count=count)
    answer = answer_from_cache(presented, cached, model=model, count=count)
    if answer is None:
        answer = lookup_uncached(presented, cached, model=model, client_ip=client_ip, count=count)
    ratelimit.settle(answer)
    return answer


def lookup_uncached(
    presented: PresentedKey,
    cached: cache.CachedRead | None,
    *,
    model: object,
    client_ip: object = None,
    count: bool = True,
) -> LookupResult:
    """Step 3 of `key_lookup`: what the cache read (`cached`) could not answer alone. A 200 of a
    key with limits is counted here (`ratelimit.count`), through the read's own Lua."""
    public_id = presented.public_id
    key_hmac = presented.key_hmac
    entry = cached.entry if cached is not None else None
    identified = entry is not None and hmac.compare_digest(entry.key_hmac, key_hmac)
    if identified:
        assert entry is not None
        guards = cached.guards if cached is not None else None
        key_pk: uuid.UUID | str = entry.key_id
        deployment_id = entry.deployment_id
    else:
        key, refusal, retry_after = _verify(
            public_id, presented.plaintext, limits.client_address(client_ip)
        )
        if key is None:
            return LookupResult(refusal or LookupOutcome.INVALID_API_KEY, retry_after=retry_after)
        key_pk = key.pk
        deployment_id = str(key.deployment_id) if key.deployment_id else None
        guards = None

    # The guards are read before the database; a fill under them cannot outlive a change that
    # commits after this point (`keys.lookup`'s docstring has the argument).
    if guards is None or not identified:
        guards = cache.guards(public_id, deployment_id)
    snapshot = _fresh_snapshot(key_pk)
    if snapshot is None:  # the key row itself is gone
        return LookupResult(LookupOutcome.INVALID_API_KEY)
    result = LookupResult(judge(snapshot, model=model, now=timezone.now()), snapshot)
    if guards is not None:
        cache.fill(
            public_id,
            cache.Entry(
                key_hmac=key_hmac,
                key_id=snapshot.key_id,
                deployment_id=snapshot.deployment_id,
                epoch=guards.epoch,
                generation=guards.generation,
                revoked=snapshot.revoked,
                deployment_status=snapshot.deployment_status,
                model=snapshot.model,
                endpoint_url=snapshot.endpoint_url,
                pack_ends_at=snapshot.pack_ends_at.timestamp() if snapshot.pack_ends_at else None,
                expires_at=snapshot.expires_at.timestamp() if snapshot.expires_at else None,
                rate_limit_rpm=snapshot.rate_limit_rpm,
                rate_limit_tpm=snapshot.rate_limit_tpm,
            ),
            live=not is_permanent_refusal(snapshot),
        )
    if count:
        result = ratelimit.count(result, public_id)
    if result.ok:
        usage.recorder.record(public_id)
    return result
