from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db.models import F, FilteredRelation, Q, QuerySet

from buddy.core.errors import NotFound
from buddy.core.ids import as_uuid
from buddy.webhooks.selectors import webhook_owner_has_endpoints_q
from deployments.models import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    Deployment,
    DeploymentEvent,
    Template,
)


def template_list_active() -> QuerySet[Template]:
    return Template.objects.filter(is_active=True).order_by("name")


def _with_default_key_id(deployments: QuerySet[Deployment]) -> QuerySet[Deployment]:
    """Annotate `default_key_id` (the default key's id or None) in the same query.

    Through the reverse relation `keys` that the keys app declares on deployments (at most one
    default key per deployment, a unique constraint of that app), not an import of it.
    """
    return deployments.annotate(
        default_key=FilteredRelation("keys", condition=Q(keys__is_default=True)),
        default_key_id=F("default_key__id"),
    )


def deployment_list_for_owner(*, owner_id: int, status: str | None = None) -> QuerySet[Deployment]:
    deployments = _with_default_key_id(
        Deployment.objects.filter(owner_id=owner_id).select_related("template")
    )
    if status:
        deployments = deployments.filter(status=status)
    return deployments.order_by("-created_at", "-pk")


def deployment_get_for_owner(*, owner_id: int, deployment_id: object) -> Deployment | None:
    """The owner's deployment, or None for someone else's or a nonexistent one (both 404)."""
    pk = as_uuid(deployment_id)
    return (
        None if pk is None else deployment_list_for_owner(owner_id=owner_id).filter(pk=pk).first()
    )


def deployment_get_owned(*, owner_id: int, deployment_id: object) -> Deployment:
    """The owner's deployment, or `NotFound` for someone else's exactly as for a missing one."""
    deployment = deployment_get_for_owner(owner_id=owner_id, deployment_id=deployment_id)
    if deployment is None:
        raise NotFound("Deployment not found.")
    return deployment


def deployment_event_list(*, deployment_id: uuid.UUID) -> QuerySet[DeploymentEvent]:
    return DeploymentEvent.objects.filter(deployment_id=deployment_id).order_by("-at", "-id")


def deployment_get(*, deployment_id: object) -> Deployment | None:
    pk = as_uuid(deployment_id)
    return None if pk is None else Deployment.objects.filter(pk=pk).first()


def deployment_default_key_id(*, deployment: Deployment) -> object | None:
    """The id of the deployment's default key, or None (annotated by the owner's selectors)."""
    if hasattr(deployment, "default_key_id"):
        return deployment.default_key_id
    return deployment.keys.filter(is_default=True).values_list("pk", flat=True).first()


def deployment_list_ended(*, deployment_ids: Sequence[object]) -> list[uuid.UUID]:
    """Those of these deployments that are in a terminal status (malformed ids are skipped)."""
    pks = [pk for pk in (as_uuid(d) for d in deployment_ids) if pk is not None]
    return list(
        Deployment.objects.filter(pk__in=pks, status__in=list(TERMINAL_STATUSES)).values_list(
            "pk", flat=True
        )
    )


def deployment_list_expired(*, now: datetime) -> QuerySet[Deployment]:
    """Live deployments whose pack has ended by `now`, oldest end first: the expiry sweep's
    candidates, found through the partial index on live packs."""
    return Deployment.objects.filter(
        status__in=list(LIVE_STATUSES), pack_ends_at__lte=now
    ).order_by("pack_ends_at")


def deployment_list_for_webhooks(*, deployment_ids: Sequence[object]) -> list[Deployment]:
    """Those of these deployments whose owner has an active webhook endpoint, ready to be shown
    (template and default key id in the same query): one query, empty in the common case."""
    pks = [pk for pk in (as_uuid(d) for d in deployment_ids) if pk is not None]
    return list(
        _with_default_key_id(
            Deployment.objects.filter(pk__in=pks)
            .filter(webhook_owner_has_endpoints_q("owner_id"))
            .select_related("template")
        )
    )


def deployment_list_pack_ending(*, now: datetime, within_seconds: int) -> QuerySet[Deployment]:
    """Live deployments whose pack ends within `within_seconds` of `now` (and has not ended),
    soonest end first: the candidates of the `deployment.pack_ending` notice."""
    return Deployment.objects.filter(
        status__in=list(LIVE_STATUSES),
        pack_ends_at__gt=now,
        pack_ends_at__lte=now + timedelta(seconds=within_seconds),
    ).order_by("pack_ends_at")
