"""Reads of webhooks: an owner's endpoints and an endpoint's deliveries."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from buddy.core.errors import NotFound
from buddy.core.ids import as_uuid
from buddy.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


def webhook_endpoint_list_for_owner(*, owner_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(owner_id=owner_id).order_by("-created_at", "-pk")


def webhook_endpoint_get_owned(*, owner_id: int, endpoint_id: object) -> WebhookEndpoint:
    """The owner's endpoint, or 404 (another user's endpoint is as absent as a missing one)."""
    pk = as_uuid(endpoint_id)
    endpoints = WebhookEndpoint.objects.filter(owner_id=owner_id)
    endpoint = None if pk is None else endpoints.filter(pk=pk).first()
    if endpoint is None:
        raise NotFound("Webhook endpoint not found.")
    return endpoint


def webhook_delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest event first."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .order_by("-event_id")
    )


def webhook_owner_has_endpoints_q(owner_field: str) -> Exists:
    """A filter for rows whose `owner_field` (a user id) has an active endpoint: apps narrow what
    they build representations for to owners who can receive them."""
    return Exists(WebhookEndpoint.objects.filter(owner_id=OuterRef(owner_field), is_active=True))


def webhook_event_exists(*, dedupe_key: str) -> bool:
    """Whether the event sent once for `dedupe_key` has been stored."""
    return WebhookEvent.objects.filter(dedupe_key=dedupe_key).exists()
