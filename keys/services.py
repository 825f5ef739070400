"""Every write to an API key or a service token.

A new key's plaintext lives only in the return value of `key_create` (shown once in the 201) and,
for the default key, sealed in the row until `key_reveal_default` takes and wipes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from buddy.core.errors import (
    DeploymentNotReady,
    KeyExpired,
    KeyLimitReached,
    KeyRevoked,
    NotFound,
    SecretAlreadyShown,
    SecretExpired,
    ValidationFailed,
)
from buddy.core.ids import as_uuid
from buddy.core.validation import validate_name
from buddy.webhooks.selectors import webhook_owner_has_endpoints_q
from deployments.models import (
    SERVING_STATUSES,
    STATUS_SPEC,
    TERMINAL_STATUSES,
    Deployment,
    DeploymentEvent,
    EventKind,
)
from deployments.services import event_record
from keys import hashing, sealing, tokens, webhooks
from keys.lookup import guards
from keys.models import (
    DEFAULT_ROLL_GRACE_SECONDS,
    MAX_RATE_LIMIT_RPM,
    MAX_RATE_LIMIT_TPM,
    MAX_ROLL_GRACE_SECONDS,
    ApiKey,
    KeyStatus,
    RevokeReason,
)
from keys.selectors import key_count_active

DEFAULT_KEY_NAME = "default"
# The keys of an ended deployment are revoked with the code of its end.
_REVOKE_REASON_OF_STATUS: dict[str, RevokeReason] = {
    status: RevokeReason(spec.end_code) for status, spec in STATUS_SPEC.items() if spec.ended
}


def _lock_deployment(deployment_id: object) -> Deployment | None:
    pk = as_uuid(deployment_id)
    return None if pk is None else Deployment.objects.select_for_update().filter(pk=pk).first()


def _lock_key(key_id: object) -> ApiKey:
    key = None
    if (pk := as_uuid(key_id)) is not None:
        key = (
            ApiKey.objects.select_for_update(of=("self",))
            .select_related("deployment")
            .filter(pk=pk)
            .first()
        )
    if key is None:
        raise NotFound("Key not found.")
    return key


class _Unchanged:
    """What `key_update` gets for a field the caller did not send (None clears a field)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()


def validate_rate_limit(value: object, *, field: str) -> int | None:
    """A key's limit: None (no limit) or a positive integer (not a bool, not "5", not 5.0)."""
    if value is None:
        return None
    top = MAX_RATE_LIMIT_RPM if field == "rate_limit_rpm" else MAX_RATE_LIMIT_TPM
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise ValidationFailed(
            fields={field: [f"A positive integer (at most {top}), or null for no limit."]}
        )
    return value


def validate_expires_at(value: object, *, now: datetime) -> datetime | None:
    """A key's expiry: None (never) or an aware time in the future."""
    if value is None:
        return None
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise ValidationFailed(fields={"expires_at": ["A date-time with a time zone, or null."]})
    if value <= now:
        raise ValidationFailed(fields={"expires_at": ["Must be in the future."]})
    return value


def _new_key(
    *,
    deployment: Deployment,
    name: str,
    is_default: bool,
    expires_at: datetime | None = None,
    rate_limit_rpm: int | None = None,
    rate_limit_tpm: int | None = None,
) -> tuple[ApiKey, str]:
    generated = tokens.generate()
    key = ApiKey(
        deployment=deployment,
        name=name,
        public_id=generated.public_id,
        secret_hash=hashing.hash_key(generated.plaintext),
        is_default=is_default,
        expires_at=expires_at,
        rate_limit_rpm=rate_limit_rpm,
        rate_limit_tpm=rate_limit_tpm,
    )
    if is_default:
        key.sealed_secret = sealing.seal(generated.plaintext)
    key.save(force_insert=True)
    return key, generated.plaintext


def key_create(
    *,
    deployment_id: object,
    name: str,
    actor: str,
    expires_at: datetime | None = None,
    rate_limit_rpm: int | None = None,
    rate_limit_tpm: int | None = None,
) -> tuple[ApiKey, str]:
    """A named key on a ready deployment, within its cap of active keys; returns the key and its
    plaintext.

    The deployment row is locked, so a key cannot be created after a concurrent stop committed
    (it sees the stop and refuses) nor slip in before it unseen (the stop's revocation finds it).
    """
    name = validate_name(name)
    expires_at = validate_expires_at(expires_at, now=timezone.now())
    rate_limit_rpm = validate_rate_limit(rate_limit_rpm, field="rate_limit_rpm")
    rate_limit_tpm = validate_rate_limit(rate_limit_tpm, field="rate_limit_tpm")
    with transaction.atomic():
        deployment = _lock_deployment(deployment_id)
        if deployment is None:
            raise NotFound("Deployment not found.")
        if deployment.status not in SERVING_STATUSES or deployment.pack_ends_at <= timezone.now():
            raise DeploymentNotReady(
                f"Keys can be created only on a ready deployment (it is {deployment.status})."
            )
        if key_count_active(deployment_id=deployment.pk) >= settings.BUDDY_MAX_KEYS_PER_DEPLOYMENT:
            raise KeyLimitReached(
                f"A deployment holds at most {settings.BUDDY_MAX_KEYS_PER_DEPLOYMENT} active keys."
            )
        key, plaintext = _new_key(
            deployment=deployment,
            name=name,
            is_default=False,
            expires_at=expires_at,
            rate_limit_rpm=rate_limit_rpm,
            rate_limit_tpm=rate_limit_tpm,
        )
        event_record(
            deployment=deployment,
            kind=EventKind.KEY_CREATED,
            actor=actor,
            detail={"key_id": str(key.pk), "public_id": key.public_id, "name": name},
        )
        webhooks.key_created(key)
    return key, plaintext


def key_create_default(*, deployment_id: object) -> ApiKey | None:
    """The deployment's default key: created once, however often (or concurrently) asked.

    Returns the existing default key if there is one, None if the deployment is not ready
    (gone, ended, or restarting: the next `ready` asks again).
    """
    with transaction.atomic():
        deployment = _lock_deployment(deployment_id)
        if deployment is None:
            return None
        existing = ApiKey.objects.filter(deployment=deployment, is_default=True).first()
        if existing is not None:
            return existing
        if deployment.status not in SERVING_STATUSES or deployment.pack_ends_at <= timezone.now():
            return None
        try:
            with transaction.atomic():
                key, _plaintext = _new_key(
                    deployment=deployment, name=DEFAULT_KEY_NAME, is_default=True
                )
        except IntegrityError:
            # Only reachable without the row lock (it is held here): the constraint still wins.
            return ApiKey.objects.get(deployment=deployment, is_default=True)
        event_record(
            deployment=deployment,
            kind=EventKind.KEY_CREATED,
            actor="system:default-key",
            detail={
                "key_id": str(key.pk),
                "public_id": key.public_id,
                "name": key.name,
                "is_default": True,
            },
        )
        webhooks.key_created(key)
    return key


def key_reveal_default(*, key_id: object, actor: str, now: datetime | None = None) -> str:
    """Take the default key's sealed secret, once: the row is locked and the secret wiped.

    Of two concurrent reveals one gets the secret and the other `secret_already_shown`.
    A reveal after the window closes wipes the secret (committed) and answers `secret_expired`.
    """
    now = now or timezone.now()
    with transaction.atomic():
        key = _lock_key(key_id)
        if key.revoked_at is not None:
            raise KeyRevoked()
        if not key.is_default or key.secret_revealed_at is not None:
            raise SecretAlreadyShown()
        expired = (
            key.sealed_secret is None
            or key.created_at + settings.BUDDY_DEFAULT_KEY_REVEAL_TTL <= now
        )
        plaintext = None if expired else sealing.unseal(bytes(key.sealed_secret or b""))
        key.sealed_secret = None
        if plaintext is not None:
            key.secret_revealed_at = now
            if key.deployment is not None:
                event_record(
                    deployment=key.deployment,
                    kind=EventKind.KEY_REVEALED,
                    actor=actor,
                    detail={"key_id": str(key.pk), "public_id": key.public_id},
                )
        key.save(update_fields=["sealed_secret", "secret_revealed_at"])
    if plaintext is None:
        raise SecretExpired()
    return plaintext


def key_revoke(
    *, key_id: object, actor: str, reason: str = RevokeReason.REVOKED_BY_OWNER
) -> ApiKey:
    """Revoke one key for good. Revoking a revoked key changes nothing (idempotent)."""
    with transaction.atomic():
        key = _lock_key(key_id)
        if key.revoked_at is not None:
            return key
        guards.tombstone_key(key.public_id)
        key.revoked_at = timezone.now()
        key.revoke_reason = reason
        key.sealed_secret = None
        key.save(update_fields=["revoked_at", "revoke_reason", "sealed_secret"])
        if key.deployment is not None:
            event_record(
                deployment=key.deployment,
                kind=EventKind.KEY_REVOKED,
                actor=actor,
                detail={"key_id": str(key.pk), "public_id": key.public_id, "reason": reason},
            )
        webhooks.keys_revoked([key])
    return key


def _refuse_unless_active(key: ApiKey, now: datetime) -> None:
    status = key.status_at(now)
    if status == KeyStatus.REVOKED:
        raise KeyRevoked()
    if status == KeyStatus.EXPIRED:
        raise KeyExpired()


# What a lookup's cache entry holds of a key: a change of these is guarded like a revoke.
_LOOKUP_FIELDS = frozenset({"expires_at", "rate_limit_rpm", "rate_limit_tpm"})


def key_update(
    *,
    key_id: object,
    actor: str,
    name: str | _Unchanged = UNCHANGED,
    expires_at: datetime | _Unchanged | None = UNCHANGED,
    rate_limit_rpm: int | _Unchanged | None = UNCHANGED,
    rate_limit_tpm: int | _Unchanged | None = UNCHANGED,
) -> ApiKey:
    """Change a key's name, expiry or limits (None clears the expiry or a limit); what is not
    passed stays. A revoked key answers `key_revoked`, an expired one `key_expired`.

    A change of expiry or limits applies to lookups from its commit on: the key's cache
    generation is bumped before and after the commit (`guards.invalidate_key_on_commit`), so no
    entry filled before the commit answers after it. Event `key_updated` names the fields that
    changed (none changed: no event)."""
    now = timezone.now()
    wanted: dict[str, object] = {}
    if not isinstance(name, _Unchanged):
        wanted["name"] = validate_name(name)
    if not isinstance(expires_at, _Unchanged):
        wanted["expires_at"] = validate_expires_at(expires_at, now=now)
    if not isinstance(rate_limit_rpm, _Unchanged):
        wanted["rate_limit_rpm"] = validate_rate_limit(rate_limit_rpm, field="rate_limit_rpm")
    if not isinstance(rate_limit_tpm, _Unchanged):
        wanted["rate_limit_tpm"] = validate_rate_limit(rate_limit_tpm, field="rate_limit_tpm")
    with transaction.atomic():
        key = _lock_key(key_id)
        _refuse_unless_active(key, timezone.now())
        changed = sorted(field for field, value in wanted.items() if getattr(key, field) != value)
        if not changed:
            return key
        if _LOOKUP_FIELDS.intersection(changed):
            guards.invalidate_key_on_commit(key.public_id)
        for field in changed:
            setattr(key, field, wanted[field])
        key.save(update_fields=changed)
        if key.deployment is not None:
            event_record(
                deployment=key.deployment,
                kind=EventKind.KEY_UPDATED,
                actor=actor,
                detail={"key_id": str(key.pk), "public_id": key.public_id, "fields": changed},
            )
    return key


def key_roll(
    *, key_id: object, actor: str, grace_seconds: int = DEFAULT_ROLL_GRACE_SECONDS
) -> tuple[ApiKey, str]:
    """Replace a key: a new key on the same deployment with the same name, limits and expiry
    (returned with its plaintext, once), and the old key expiring at
    `min(its expires_at, now + grace_seconds)` with `rolled_to` naming the new one (grace 0: at
    once). Allowed while the deployment is pending, provisioning or ready, and at the cap (the
    new key replaces the old). A revoked key answers `key_revoked` (an ended deployment's keys
    are revoked), an expired one `key_expired`. Events `key_created` (new) and `key_rolled` (old).

    The deployment row is locked first (as `key_create` and a deployment's end do), then the key:
    a roll cannot slip a new key past a concurrent stop."""
    if (
        isinstance(grace_seconds, bool)
        or not isinstance(grace_seconds, int)
        or not 0 <= grace_seconds <= MAX_ROLL_GRACE_SECONDS
    ):
        raise ValidationFailed(
            fields={"grace_seconds": [f"An integer from 0 to {MAX_ROLL_GRACE_SECONDS}."]}
        )
    pk = as_uuid(key_id)
    deployment_pk = (
        None
        if pk is None
        else ApiKey.objects.filter(pk=pk).values_list("deployment_id", flat=True).first()
    )
    with transaction.atomic():
        deployment = _lock_deployment(deployment_pk) if deployment_pk is not None else None
        old = _lock_key(key_id)
        now = timezone.now()
        _refuse_unless_active(old, now)
        if deployment is None or old.deployment_id != deployment.pk:
            raise DeploymentNotReady("The key's deployment no longer exists.")
        if deployment.status in TERMINAL_STATUSES:
            # Unreachable while ends revoke their keys in their transaction (key_revoked above).
            raise DeploymentNotReady(f"The deployment has ended ({deployment.status}).")
        new, plaintext = _new_key(
            deployment=deployment,
            name=old.name,
            is_default=False,
            expires_at=old.expires_at,
            rate_limit_rpm=old.rate_limit_rpm,
            rate_limit_tpm=old.rate_limit_tpm,
        )
        guards.invalidate_key_on_commit(old.public_id)
        grace_end = now + timedelta(seconds=grace_seconds)
        old.expires_at = grace_end if old.expires_at is None else min(old.expires_at, grace_end)
        old.rolled_to = new
        old.save(update_fields=["expires_at", "rolled_to"])
        event_record(
            deployment=deployment,
            kind=EventKind.KEY_CREATED,
            actor=actor,
            detail={
                "key_id": str(new.pk),
                "public_id": new.public_id,
                "name": new.name,
                "rolled_from": str(old.pk),
            },
        )
        webhooks.key_created(new)
        event_record(
            deployment=deployment,
            kind=EventKind.KEY_ROLLED,
            actor=actor,
            detail={
                "key_id": str(old.pk),
                "public_id": old.public_id,
                "rolled_to": str(new.pk),
                "grace_seconds": grace_seconds,
                "expires_at": old.expires_at.isoformat(),
            },
        )
    return new, plaintext


def key_revoke_leaked(*, key_id: object, url: str, actor: str) -> bool:
    """Revoke a key found in public (reason `leaked`), record where (`key_leaked`, `detail.url`)
    and tell its owner (`key.revoked`, then `key.leaked`), in one transaction; False if the key
    was revoked already (then nothing changes)."""
    with transaction.atomic():
        key = _lock_key(key_id)
        if key.revoked_at is not None:
            return False
        key = key_revoke(key_id=key.pk, actor=actor, reason=RevokeReason.LEAKED)
        if key.deployment is not None:
            event_record(
                deployment=key.deployment,
                kind=EventKind.KEY_LEAKED,
                actor=actor,
                detail={"key_id": str(key.pk), "public_id": key.public_id, "url": url},
            )
        webhooks.key_leaked(key, url=url)
    return True


def key_revoke_all_for_deployments(
    *,
    deployment_ids: Sequence[object],
    actor: str,
    reason: str | None = None,
    batch_size: int = 500,
) -> int:
    """Revoke every active key of these deployments (one deployment is a list of one),
    `batch_size` keys per transaction; returns how many this call revoked. The reason is the given
    one, or the one of each deployment's end.

    Keys are locked (`FOR UPDATE`, in key order, so concurrent calls never deadlock) and
    re-checked active under the lock, so running it twice, or twice at once, revokes each key
    exactly once and writes each event exactly once. A call cut off mid-way leaves whole batches.
    """
    pks = [pk for pk in (as_uuid(d) for d in deployment_ids) if pk is not None]
    total = 0
    # A bounded number of deployments per query keeps each batch's scan small however many came.
    for start in range(0, len(pks), _REVOKE_DEPLOYMENTS_PER_QUERY):
        total += _revoke_all_in_chunk(
            pks[start : start + _REVOKE_DEPLOYMENTS_PER_QUERY],
            actor=actor,
            reason=reason,
            batch_size=batch_size,
        )
    return total


_REVOKE_DEPLOYMENTS_PER_QUERY = 100


def _revoke_all_in_chunk(
    pks: Sequence[uuid.UUID], *, actor: str, reason: str | None, batch_size: int
) -> int:
    reason_of = {
        pk: reason or _REVOKE_REASON_OF_STATUS.get(status, RevokeReason.REVOKED_BY_OPERATOR)
        for pk, status in Deployment.objects.filter(pk__in=pks).values_list("pk", "status")
    }
    total = 0
    while reason_of:
        with transaction.atomic():
            batch = list(
                ApiKey.objects.select_for_update()
                .filter(deployment_id__in=list(reason_of), revoked_at__isnull=True)
                .order_by("pk")
                .values_list("pk", "public_id", "deployment_id")[:batch_size]
            )
            if not batch:
                break
            guards.tombstone_keys([public_id for _pk, public_id, _deployment_id in batch])
            now = timezone.now()
            by_reason: dict[str, list[uuid.UUID]] = {}
            for pk, _public_id, deployment_pk in batch:
                by_reason.setdefault(reason_of[deployment_pk], []).append(pk)
            for key_reason, key_pks in by_reason.items():
                ApiKey.objects.filter(pk__in=key_pks).update(
                    revoked_at=now, revoke_reason=key_reason, sealed_secret=None
                )
            # The rows are locked and were selected active, so each is claimed here, once.
            DeploymentEvent.objects.bulk_create(
                DeploymentEvent(
                    deployment_id=deployment_pk,
                    kind=EventKind.KEY_REVOKED,
                    actor=actor,
                    detail={
                        "key_id": str(pk),
                        "public_id": public_id,
                        "reason": reason_of[deployment_pk],
                    },
                )
                for pk, public_id, deployment_pk in batch
            )
            webhooks.keys_revoked(
                ApiKey.objects.filter(pk__in=[pk for pk, _p, _d in batch])
                .filter(webhook_owner_has_endpoints_q("deployment__owner_id"))
                .select_related("deployment")
                .order_by("created_at", "pk")
            )
            total += len(batch)
    return total


def key_wipe_expired_secrets(*, now: datetime | None = None) -> int:
    """Forget sealed default-key secrets whose reveal window has closed; returns how many."""
    now = now or timezone.now()
    return ApiKey.objects.filter(
        sealed_secret__isnull=False, created_at__lte=now - settings.BUDDY_DEFAULT_KEY_REVEAL_TTL
    ).update(sealed_secret=None)


def key_reconcile(*, batch_size: int = 200) -> dict[str, int]:
    """What the database says is owed and a lost task message may have left undone:
    default keys of ready deployments, revocation of ended deployments' keys, expired secrets."""
    missing_default = list(
        Deployment.objects.filter(
            status__in=list(SERVING_STATUSES), pack_ends_at__gt=timezone.now()
        )
        .exclude(keys__is_default=True)
        .values_list("pk", flat=True)[:batch_size]
    )
    created = sum(1 for pk in missing_default if key_create_default(deployment_id=pk) is not None)
    ended_with_active_keys = list(
        ApiKey.objects.filter(
            revoked_at__isnull=True, deployment__status__in=list(TERMINAL_STATUSES)
        )
        .values_list("deployment_id", flat=True)
        .distinct()[:batch_size]
    )
    revoked = key_revoke_all_for_deployments(
        deployment_ids=ended_with_active_keys,
        actor="system:reconciler",
        batch_size=settings.BUDDY_REVOKE_BATCH_SIZE,
    )
    return {
        "default_keys_created": created,
        "keys_revoked": revoked,
        "secrets_wiped": key_wipe_expired_secrets(),
    }


def key_touch_last_used(*, used: dict[str, datetime]) -> int:
    """Record when keys were last used (public id -> time), never moving a time backwards.

    Called in batches (beat's flush of what lookups recorded), not once per lookup.
    """
    written = 0
    with transaction.atomic():
        for public_id, at in sorted(used.items()):
            written += ApiKey.objects.filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=at), public_id=public_id
            ).update(last_used_at=at)
    return written
