"""Webhook endpoints, the events owed to them (the outbox) and one delivery row per endpoint and
event, which records every attempt's outcome."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class EventType(models.TextChoices):
    DEPLOYMENT_READY = "deployment.ready"
    DEPLOYMENT_ENDED = "deployment.ended"
    DEPLOYMENT_PACK_ENDING = "deployment.pack_ending"
    DEPLOYMENT_EXTENDED = "deployment.extended"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    KEY_LEAKED = "key.leaked"
    PING = "ping"


# What an endpoint may subscribe to (`ping` goes to the endpoint it tests, subscribed or not).
SUBSCRIBABLE_TYPES = tuple(t.value for t in EventType if t != EventType.PING)
ALL_EVENTS = "*"


class WebhookEndpoint(models.Model):
    """A URL that receives its owner's events, signed with a secret kept sealed (never in clear)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.CharField(max_length=500)
    events = models.JSONField(default=list)
    sealed_secret = models.BinaryField(editable=False)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    # Since when every attempt has failed (null after a success); long enough disables it.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="webhook_owner_created_idx")]

    def __str__(self) -> str:
        return self.url

    def subscribes_to(self, event_type: str) -> bool:
        return ALL_EVENTS in self.events or event_type in self.events


class WebhookEvent(models.Model):
    """One event, written in the transaction of the change it reports. `id` orders events as
    they were written; `uid` (`evt_…`) is what receivers see, as the body's `id` and as the
    `webhook-id` header of every attempt (their idempotency key)."""

    id = models.BigAutoField(primary_key=True)
    uid = models.CharField(max_length=40, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_events"
    )
    type = models.CharField(max_length=40, choices=EventType.choices)
    # The body sent, whole and byte for byte the same at every attempt (`{"id", "type",
    # "created_at", "data"}`; text, not jsonb, which would reorder its keys).
    body = models.TextField()
    # Events that must be sent at most once per fact (a pack's ending notice per `pack_ends_at`).
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.uid}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One event owed to one endpoint, and how its attempts went."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    # Why the last attempt failed, in a few words (never a body the receiver sent back).
    last_error = models.CharField(max_length=200, blank=True, default="")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-event_id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once")
        ]
        indexes = [
            # What is due, per endpoint in event order (the delivery task and beat's re-drive).
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["endpoint", "event"],
                name="webhook_delivery_pending_idx",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.status})"
