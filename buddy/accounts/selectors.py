"""Reads of service tokens: who is calling an internal endpoint."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from django.conf import settings

from buddy.accounts.models import ServiceToken
from buddy.core.credentials import bearer_token


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
