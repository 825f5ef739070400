from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from django.db import models
from django.db.models import Q
from django.utils import timezone

from keys.tokens import PUBLIC_ID_LENGTH, mask

# The largest limits a key takes: a positive integer up to these (the RPM window holds one
# entry per request of the last minute in Redis, so it is bounded tighter than the token count).
MAX_RATE_LIMIT_RPM: Final = 100_000
MAX_RATE_LIMIT_TPM: Final = 2_000_000_000
MAX_ROLL_GRACE_SECONDS: Final = 604_800
DEFAULT_ROLL_GRACE_SECONDS: Final = 3600


class KeyStatus(models.TextChoices):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


def key_status_q(status: str, now: datetime, prefix: str = "") -> Q:
    """The keys of one status, as a filter (`ApiKey.status_at`'s twin; `prefix` for a join,
    e.g. "keys__")."""
    revoked = Q(**{f"{prefix}revoked_at__isnull": True})
    unexpired = Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    if status == KeyStatus.REVOKED:
        return ~revoked
    if status == KeyStatus.EXPIRED:
        return revoked & ~unexpired
    return revoked & unexpired


class RevokeReason(models.TextChoices):
    REVOKED_BY_OWNER = "revoked_by_owner"
    REVOKED_BY_OPERATOR = "revoked_by_operator"
    DEPLOYMENT_STOPPED = "deployment_stopped"
    DEPLOYMENT_FAILED = "deployment_failed"
    DEPLOYMENT_TERMINATED = "deployment_terminated"
    # Found in public and reported by a secret scanner (`keys.leaks`).
    LEAKED = "leaked"


class ApiKey(models.Model):
    """An `ob_sk_` key, bound to one deployment forever.

    Only the public id and an argon2id hash are kept. The default key's secret is additionally
    kept sealed (Fernet) until its single reveal or until the reveal window ends.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # SET_NULL: a key outlives a deleted deployment so that a lookup can say
    # `deployment_not_found` instead of pretending the key never existed.
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.SET_NULL, null=True, related_name="keys"
    )
    name = models.CharField(max_length=100)
    public_id = models.CharField(max_length=PUBLIC_ID_LENGTH, unique=True)
    secret_hash = models.CharField(max_length=200)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(
        max_length=32, choices=RevokeReason.choices, blank=True, default=""
    )
    sealed_secret = models.BinaryField(null=True, blank=True, editable=False)
    secret_revealed_at = models.DateTimeField(null=True, blank=True)
    # v2: null = never / no limit.
    expires_at = models.DateTimeField(null=True, blank=True)
    rate_limit_rpm = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_tpm = models.PositiveIntegerField(null=True, blank=True)
    rolled_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment"],
                condition=models.Q(is_default=True),
                name="apikey_one_default_per_deployment",
            ),
        ]
        indexes = [
            # The cap's count (`key_count_active`): not revoked, and not past `expires_at`.
            models.Index(
                fields=["deployment", "expires_at"],
                condition=models.Q(revoked_at__isnull=True),
                name="apikey_unrevoked_deploy_idx",
            ),
            models.Index(
                fields=["created_at"],
                condition=models.Q(sealed_secret__isnull=False),
                name="apikey_sealed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return mask(self.public_id)

    def status_at(self, now: datetime) -> str:
        """THE one judgement of a key's status: `revoked` wins, then `expired`, else `active`
        (the query twin is `key_status_q`)."""
        if self.revoked_at is not None:
            return KeyStatus.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE

    @property
    def is_active(self) -> bool:
        return self.status_at(timezone.now()) == KeyStatus.ACTIVE

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())

    @property
    def secret_available(self) -> bool:
        return self.is_default and self.sealed_secret is not None


class PendingCacheGuard(models.Model):
    """A lookup-cache guard (a tombstone, or a deployment generation bump) that a change could not
    write to Redis. Written in the transaction of the change, so it is owed exactly when the change
    commits and outlives the process that made it; beat writes it to Redis and deletes it
    (`keys.lookup.guards.pending_guards_write`). PostgreSQL, not a thread, remembers what the
    cache still has to be told."""

    class Op(models.TextChoices):
        TOMBSTONE = "tombstone"
        BUMP = "bump"

    name = models.CharField(max_length=200)  # the Redis key
    op = models.CharField(max_length=16, choices=Op.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.op} {self.name}"
