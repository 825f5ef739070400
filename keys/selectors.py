"""Reads of keys, including the proxy's lookup: which deployment does a presented key route to.

The lookup answers with one row of the contract's lookup table. It refuses a malformed key before
any I/O, finds the key by its public id, verifies it with one argon2 check, and then judges the
key and its deployment as they are now (a pack that has ended is refused even before the expiry
sweep has terminated it).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from buddy.errors import NotFound
from buddy.ids import as_uuid
from deployments.models import DeploymentStatus
from keys import hashing, tokens
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
    """The lookup straight from PostgreSQL: parse, find by public id, one argon2 verify, judge."""
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


def key_lookup(*, authorization: object, model: object = None) -> LookupResult:
    """The proxy's lookup: the one entry point every caller (internal API, gateway) uses."""
    return key_lookup_uncached(authorization=authorization, model=model)


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
