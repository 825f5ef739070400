"""Reads of keys, including the proxy's lookup: which deployment does a presented key route to.

The lookup answers with one row of the contract's lookup table. It refuses a malformed key before
any I/O, finds the key by its public id, verifies it with one argon2 check, and then judges the
key and its deployment as they are now (a pack that has ended is refused even before the expiry
sweep has terminated it).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from buddy.errors import NotFound
from buddy.ids import as_uuid
from deployments.models import TERMINAL_STATUSES, DeploymentStatus
from keys import hashing, lookup_cache, tokens
from keys.models import ApiKey, ServiceToken


class LookupOutcome(enum.Enum):
    """(HTTP status, error code, OpenAI error type) of each row of the lookup table."""

    OK = (200, "", "")
    INVALID_JSON = (400, "invalid_json", "invalid_request_error")
    MISSING_API_KEY = (400, "missing_api_key", "invalid_request_error")
    MODEL_MISMATCH = (400, "model_mismatch", "invalid_request_error")
    INVALID_API_KEY = (401, "invalid_api_key", "authentication_error")
    REVOKED_API_KEY = (401, "revoked_api_key", "authentication_error")
    DEPLOYMENT_NOT_FOUND = (404, "deployment_not_found", "invalid_request_error")
    DEPLOYMENT_NOT_READY = (409, "deployment_not_ready", "invalid_request_error")
    DEPLOYMENT_STOPPED = (409, "deployment_stopped", "invalid_request_error")
    DEPLOYMENT_FAILED = (409, "deployment_failed", "invalid_request_error")
    DEPLOYMENT_TERMINATED = (409, "deployment_terminated", "invalid_request_error")
    RATE_LIMITED = (429, "rate_limited", "rate_limit_error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]

    @property
    def error_type(self) -> str:
        return self.value[2]


MESSAGES = {
    LookupOutcome.INVALID_JSON: "The request body is not a JSON object.",
    LookupOutcome.MISSING_API_KEY: "No API key: send 'Authorization: Bearer ob_sk_...'.",
    LookupOutcome.MODEL_MISMATCH: "This key's deployment does not serve the requested model.",
    LookupOutcome.INVALID_API_KEY: "Invalid API key.",
    LookupOutcome.REVOKED_API_KEY: "This API key has been revoked.",
    LookupOutcome.DEPLOYMENT_NOT_FOUND: "The deployment of this key no longer exists.",
    LookupOutcome.DEPLOYMENT_NOT_READY: "The deployment is not ready yet.",
    LookupOutcome.DEPLOYMENT_STOPPED: "The deployment has been stopped.",
    LookupOutcome.DEPLOYMENT_FAILED: "The deployment has failed.",
    LookupOutcome.DEPLOYMENT_TERMINATED: "The deployment has been terminated.",
    LookupOutcome.RATE_LIMITED: "Too many failed attempts for this key; retry later.",
}


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """What a lookup needs to know of a verified key and its deployment (cacheable)."""

    key_id: str
    public_id: str
    revoked: bool
    deployment_id: str | None
    deployment_status: str
    model: str
    endpoint_url: str
    pack_ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class LookupResult:
    outcome: LookupOutcome
    snapshot: KeySnapshot | None = None
    retry_after: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is LookupOutcome.OK

    def body(self) -> dict[str, Any]:
        """The response body of the contract for this outcome."""
        if self.ok and self.snapshot is not None:
            return {
                "deployment_id": self.snapshot.deployment_id,
                "model": self.snapshot.model,
                "endpoint_url": self.snapshot.endpoint_url,
                "key_id": self.snapshot.key_id,
            }
        return {
            "error": {
                "message": MESSAGES[self.outcome],
                "type": self.outcome.error_type,
                "code": self.outcome.code,
                "param": None,
            }
        }


def bearer_token(authorization: object) -> str | None:
    """The credential of a `Bearer` Authorization header, or None when there is none."""
    if not isinstance(authorization, str):
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


def judge(snapshot: KeySnapshot, *, model: object, now: datetime) -> LookupOutcome:
    """The answer for a verified key, from the contract's order of rows."""
    if snapshot.revoked:
        return LookupOutcome.REVOKED_API_KEY
    if snapshot.deployment_id is None:
        return LookupOutcome.DEPLOYMENT_NOT_FOUND
    status = snapshot.deployment_status
    if status == DeploymentStatus.STOPPED:
        return LookupOutcome.DEPLOYMENT_STOPPED
    if status == DeploymentStatus.FAILED:
        return LookupOutcome.DEPLOYMENT_FAILED
    if status == DeploymentStatus.TERMINATED or (
        snapshot.pack_ends_at is not None and snapshot.pack_ends_at <= now
    ):
        return LookupOutcome.DEPLOYMENT_TERMINATED
    if status != DeploymentStatus.READY or not snapshot.endpoint_url:
        return LookupOutcome.DEPLOYMENT_NOT_READY
    if model is not None and model != snapshot.model:
        return LookupOutcome.MODEL_MISMATCH
    return LookupOutcome.OK


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
    )


def key_lookup_uncached(*, authorization: object, model: object = None) -> LookupResult:
    """The lookup straight from PostgreSQL: parse, find by public id, one argon2 verify, judge.

    No cache, no rate limit: for tests and tools. The proxy's path is `key_lookup`.
    """
    credential = bearer_token(authorization)
    if credential is None:
        return LookupResult(LookupOutcome.MISSING_API_KEY)
    try:
        parsed = tokens.parse(credential)
    except tokens.MalformedKey:
        return LookupResult(LookupOutcome.INVALID_API_KEY)
    key = ApiKey.objects.select_related("deployment").filter(public_id=parsed.public_id).first()
    if key is None or not hashing.verify_key(key.secret_hash, parsed.plaintext):
        return LookupResult(LookupOutcome.INVALID_API_KEY)
    snapshot = key_snapshot(key)
    return LookupResult(judge(snapshot, model=model, now=timezone.now()), snapshot)


# --- the cached lookup (the proxy's hot path) -----------------------------------------------------


def key_cache_hmac(plaintext: str) -> str:
    """What a cache entry holds to recognise the full key: HMAC-SHA256 under the server's pepper."""
    return hmac.new(_pepper(), plaintext.encode(), hashlib.sha256).hexdigest()


@functools.cache
def _pepper_of(value: str) -> bytes:
    return value.encode()


def _pepper() -> bytes:
    return _pepper_of(settings.BUDDY_LOOKUP_CACHE_PEPPER)


class _VerifySlots:
    """Bounds the argon2 verifications running at once in this process (each one costs
    `BUDDY_ARGON2_MEMORY_COST` KiB and a core for milliseconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.size = 0
        self.semaphore = threading.BoundedSemaphore(1)

    def get(self) -> threading.BoundedSemaphore:
        size = settings.BUDDY_LOOKUP_MAX_CONCURRENT_VERIFICATIONS
        if size != self.size:
            with self.lock:
                if size != self.size:
                    self.semaphore, self.size = threading.BoundedSemaphore(size), size
        return self.semaphore


verify_slots = _VerifySlots()


def _snapshot_of_entry(public_id: str, entry: lookup_cache.Entry) -> KeySnapshot:
    return KeySnapshot(
        key_id=entry.key_id,
        public_id=public_id,
        revoked=entry.revoked,
        deployment_id=entry.deployment_id,
        deployment_status=entry.deployment_status,
        model=entry.model,
        endpoint_url=entry.endpoint_url,
        pack_ends_at=entry.pack_ends_at_datetime,
    )


def _is_permanent_refusal(snapshot: KeySnapshot) -> bool:
    """Answers no later change can turn into a 200 (safe to serve whatever the guards say)."""
    return (
        snapshot.revoked
        or snapshot.deployment_id is None
        or snapshot.deployment_status in TERMINAL_STATUSES
    )


def _verify(public_id: str, plaintext: str) -> tuple[ApiKey | None, LookupOutcome | None, int]:
    """The key row if the plaintext verifies; else the refusal and its Retry-After.

    A malformed key never gets here; an unknown public id costs one indexed query and no argon2.
    """
    key = (
        ApiKey.objects.filter(public_id=public_id)
        .only("pk", "public_id", "secret_hash", "deployment_id")
        .first()
    )
    if key is None:
        return None, LookupOutcome.INVALID_API_KEY, 0
    failed, retry_after = lookup_cache.failures(public_id)
    if failed >= settings.BUDDY_LOOKUP_FAILURE_LIMIT:
        return None, LookupOutcome.RATE_LIMITED, retry_after
    slots = verify_slots.get()
    if not slots.acquire(timeout=settings.BUDDY_LOOKUP_VERIFY_WAIT_SECONDS):
        # Every verification slot stayed busy: refuse rather than queue without bound.
        return None, LookupOutcome.RATE_LIMITED, 1
    try:
        ok = hashing.verify_key(key.secret_hash, plaintext)
    finally:
        slots.release()
    if not ok:
        lookup_cache.failure_record(public_id)
        return None, LookupOutcome.INVALID_API_KEY, 0
    return key, None, 0


def _fresh_snapshot(key_pk: object) -> KeySnapshot | None:
    key = (
        ApiKey.objects.select_related("deployment")
        .only(
            "pk",
            "public_id",
            "revoked_at",
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


def key_lookup(*, authorization: object, model: object = None) -> LookupResult:
    """The proxy's lookup: the one entry point every caller (internal API, gateway) uses.

    1. Parse and checksum the key (no I/O): malformed answers 401 at once.
    2. One Redis round trip (`lookup_cache.read`): the key's entry and its guards. An entry whose
       HMAC matches the presented key identifies it without argon2; if the guards are clear (no
       tombstone, same generation) it also answers without SQL.
    3. Otherwise the key is verified (once per cache lifetime: argon2 under a rate limit and a
       bound on concurrent verifications), the guards are read, *then* the database, and the
       answer is filled into the cache only if the guards have not moved (see `lookup_cache`).
    With Redis unreachable, every lookup takes step 3 against PostgreSQL alone.
    """
    credential = bearer_token(authorization)
    if credential is None:
        return LookupResult(LookupOutcome.MISSING_API_KEY)
    try:
        parsed = tokens.parse(credential)
    except tokens.MalformedKey:
        return LookupResult(LookupOutcome.INVALID_API_KEY)
    public_id = parsed.public_id
    key_hmac = key_cache_hmac(parsed.plaintext)

    cached = lookup_cache.read(public_id)
    entry = cached.entry if cached is not None else None
    identified = entry is not None and hmac.compare_digest(entry.key_hmac, key_hmac)
    if identified:
        assert entry is not None
        snapshot = _snapshot_of_entry(public_id, entry)
        guards = cached.guards if cached is not None else None
        fresh = guards is not None and guards.clear and guards.generation == entry.generation
        if fresh or _is_permanent_refusal(snapshot):
            result = LookupResult(judge(snapshot, model=model, now=timezone.now()), snapshot)
            if result.ok:
                lookup_cache.usage.record(public_id)
            return result
        key_pk: object = entry.key_id
        deployment_id = entry.deployment_id
    else:
        key, refusal, retry_after = _verify(public_id, parsed.plaintext)
        if key is None:
            return LookupResult(refusal or LookupOutcome.INVALID_API_KEY, retry_after=retry_after)
        key_pk = key.pk
        deployment_id = str(key.deployment_id) if key.deployment_id else None
        guards = None

    # The guards are read before the database; a fill under them cannot outlive a change that
    # commits after this point (lookup_cache's docstring has the argument).
    if guards is None or not identified:
        guards = lookup_cache.guards(public_id, deployment_id)
    snapshot = _fresh_snapshot(key_pk)
    if snapshot is None:  # the key row itself is gone
        return LookupResult(LookupOutcome.INVALID_API_KEY)
    result = LookupResult(judge(snapshot, model=model, now=timezone.now()), snapshot)
    if guards is not None:
        lookup_cache.fill(
            public_id,
            lookup_cache.Entry(
                key_hmac=key_hmac,
                key_id=snapshot.key_id,
                deployment_id=snapshot.deployment_id,
                generation=guards.generation,
                revoked=snapshot.revoked,
                deployment_status=snapshot.deployment_status,
                model=snapshot.model,
                endpoint_url=snapshot.endpoint_url,
                pack_ends_at=snapshot.pack_ends_at.timestamp() if snapshot.pack_ends_at else None,
            ),
            live=not _is_permanent_refusal(snapshot),
        )
    if result.ok:
        lookup_cache.usage.record(public_id)
    return result


def key_list_for_owner(
    *, owner_id: int, deployment_id: object = None, status: str | None = None
) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.filter(deployment__owner_id=owner_id).select_related("deployment")
    if deployment_id is not None:
        keys = keys.filter(deployment_id=deployment_id)
    if status == "active":
        keys = keys.filter(revoked_at__isnull=True)
    elif status == "revoked":
        keys = keys.filter(revoked_at__isnull=False)
    return keys.order_by("-created_at", "-pk")


def key_get_for_owner(*, owner_id: int, key_id: object) -> ApiKey | None:
    """The owner's key, or None for someone else's or a nonexistent one (both 404)."""
    pk = as_uuid(key_id)
    return None if pk is None else key_list_for_owner(owner_id=owner_id).filter(pk=pk).first()


def key_get_owned(*, owner_id: int, key_id: object) -> ApiKey:
    """The owner's key, or `NotFound` for someone else's exactly as for a missing one."""
    key = key_get_for_owner(owner_id=owner_id, key_id=key_id)
    if key is None:
        raise NotFound("Key not found.")
    return key


def service_token_authenticate(*, authorization: object) -> ServiceTokenInfo | None:
    """The active service token a `Bearer` header presents, or None.

    Tokens are 256-bit random, so a SHA-256 digest is looked up directly (unique index): no
    argon2, microseconds of hashing, one indexed query.
    """
    credential = bearer_token(authorization)
    if credential is None or not credential.startswith("ob_svc_") or len(credential) > 100:
        return None
    digest = hashlib.sha256(credential.encode()).hexdigest()
    row = (
        ServiceToken.objects.filter(digest=digest, revoked_at__isnull=True)
        .values_list("pk", "name", "role", "digest")
        .first()
    )
    if row is None or not hmac.compare_digest(row[3], digest):
        return None
    return ServiceTokenInfo(id=row[0], name=row[1], role=row[2])


@dataclass(frozen=True, slots=True)
class ServiceTokenInfo:
    id: int
    name: str
    role: str


class _ServiceTokenCache:
    """Service tokens this process has recently seen valid: digest -> (token, expiry).

    The proxy presents its token on every lookup; a hit here costs one SHA-256 and a dict read.
    Only valid tokens are remembered (a wrong token costs its one indexed query each time), so a
    revoked service token keeps working in a process for at most
    `BUDDY_LOOKUP_SERVICE_TOKEN_CACHE_SECONDS` (default 10 s).
    """

    def __init__(self, max_size: int = 1024) -> None:
        self.entries: dict[str, tuple[ServiceTokenInfo, float]] = {}
        self.max_size = max_size

    def get(self, digest: str) -> ServiceTokenInfo | None:
        hit = self.entries.get(digest)
        if hit is None or hit[1] <= time.monotonic():
            return None
        return hit[0]

    def put(self, digest: str, token: ServiceTokenInfo) -> None:
        if len(self.entries) >= self.max_size:
            self.entries.clear()
        ttl = settings.BUDDY_LOOKUP_SERVICE_TOKEN_CACHE_SECONDS
        self.entries[digest] = (token, time.monotonic() + ttl)

    def clear(self) -> None:
        self.entries.clear()


service_token_cache = _ServiceTokenCache()


def service_token_authenticate_cached(*, authorization: object) -> ServiceTokenInfo | None:
    """`service_token_authenticate` with no SQL on repeat (see `_ServiceTokenCache`)."""
    credential = bearer_token(authorization)
    if credential is None or not credential.startswith("ob_svc_") or len(credential) > 100:
        return None
    digest = hashlib.sha256(credential.encode()).hexdigest()
    # A dict lookup by digest: the digest of a 256-bit secret leaks nothing through timing.
    token = service_token_cache.get(digest)
    if token is None:
        token = service_token_authenticate(authorization=authorization)
        if token is not None:
            service_token_cache.put(digest, token)
    return token
