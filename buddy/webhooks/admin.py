"""The admin shows webhook endpoints and their deliveries (never a secret); operators can
re-enable a disabled endpoint or delete one. Deliveries are written by the delivery task only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from buddy.http.admin_actions import ReadOnlyTabularInline, RefuseSecretLookups, apply_each
from buddy.webhooks import services
from buddy.webhooks.models import WebhookDelivery, WebhookEndpoint

_DELIVERY_FIELDS = (
    "event",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "last_attempt_at",
    "next_attempt_at",
)


class DeliveryInline(ReadOnlyTabularInline):
    model = WebhookDelivery
    fields = _DELIVERY_FIELDS
    readonly_fields = _DELIVERY_FIELDS
    ordering = ("-event_id",)
    max_num = 0
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).select_related("event")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(RefuseSecretLookups):
    secret_fields = frozenset({"sealed_secret"})
    list_display = ("url", "owner", "is_active", "disabled_reason", "failing_since", "created_at")
    list_filter = ("is_active",)
    list_select_related = ("owner",)
    search_fields = ("url", "owner__username")
    fields = (
        "id",
        "owner",
        "url",
        "events",
        "is_active",
        "disabled_reason",
        "failing_since",
        "created_at",
    )
    readonly_fields = fields
    inlines = [DeliveryInline]
    actions = ["enable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a secret is shown once, to its owner: endpoints come from the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Re-enable the selected disabled endpoints")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda endpoint: services.webhook_endpoint_enable(endpoint_id=endpoint.pk),
            done="{count} endpoint(s) enabled.",
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "endpoint", *_DELIVERY_FIELDS[1:])
    list_filter = ("status", "event__type")
    list_select_related = ("event", "endpoint")
    search_fields = ("=event__uid",)
    fields = ("id", "endpoint", *_DELIVERY_FIELDS, "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
