from __future__ import annotations

from django.db.models import QuerySet

from buddy.ids import as_uuid
from deployments.models import TERMINAL_STATUSES, Deployment, DeploymentEvent, Template


def template_list_active() -> QuerySet[Template]:
    return Template.objects.filter(is_active=True).order_by("name")


def deployment_list_for_owner(*, owner_id: int, status: str | None = None) -> QuerySet[Deployment]:
    deployments = Deployment.objects.filter(owner_id=owner_id).select_related("template")
    if status:
        deployments = deployments.filter(status=status)
    return deployments.order_by("-created_at", "-pk")


def deployment_get_for_owner(*, owner_id: int, deployment_id: object) -> Deployment | None:
    """The owner's deployment, or None for someone else's or a nonexistent one (both 404)."""
    pk = as_uuid(deployment_id)
    return (
        None if pk is None else deployment_list_for_owner(owner_id=owner_id).filter(pk=pk).first()
    )


def deployment_event_list(*, deployment_id: object) -> QuerySet[DeploymentEvent]:
    return DeploymentEvent.objects.filter(deployment_id=deployment_id).order_by("-at", "-id")


def deployment_get(*, deployment_id: object) -> Deployment | None:
    pk = as_uuid(deployment_id)
    return None if pk is None else Deployment.objects.filter(pk=pk).first()


def deployment_list_ended(*, deployment_ids: list[object]) -> list[object]:
    """Those of these deployments that are in a terminal status (malformed ids are skipped)."""
    pks = [pk for pk in (as_uuid(d) for d in deployment_ids) if pk is not None]
    return list(
        Deployment.objects.filter(pk__in=pks, status__in=list(TERMINAL_STATUSES)).values_list(
            "pk", flat=True
        )
    )
