"""Reads of keys for their owners (the proxy's lookup is `keys.lookup.selectors.key_lookup`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from buddy.core.errors import NotFound
from buddy.core.ids import as_uuid
from keys.models import ApiKey, KeyStatus, key_status_q


def key_list_for_owner(
    *, owner_id: int, deployment_id: uuid.UUID | None = None, status: str | None = None
) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.filter(deployment__owner_id=owner_id).select_related("deployment")
    if deployment_id is not None:
        keys = keys.filter(deployment_id=deployment_id)
    if status in KeyStatus.values:
        keys = keys.filter(key_status_q(status, timezone.now()))
    return keys.order_by("-created_at", "-pk")


def key_count_active(*, deployment_id: uuid.UUID, now: datetime | None = None) -> int:
    """The deployment's active keys (not revoked, not expired): what its cap counts. Served by
    the partial index `apikey_unrevoked_deploy_idx` (deployment, expires_at) WHERE not revoked."""
    return ApiKey.objects.filter(
        key_status_q(KeyStatus.ACTIVE, now or timezone.now()), deployment_id=deployment_id
    ).count()


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
