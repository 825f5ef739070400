"""Input and output shapes of the console's webhook endpoints (the contract's fields)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from buddy.http.api import BlankAsNullCharField, StrictCharField
from buddy.webhooks.models import DeliveryStatus


class WebhookEndpointCreateInputSerializer(serializers.Serializer):
    url = StrictCharField(max_length=500, trim_whitespace=False)
    events = serializers.ListField(
        child=StrictCharField(max_length=40),
        allow_empty=False,
        max_length=16,
        help_text='Event types, or ["*"] for every one.',
    )


@extend_schema_serializer(component_name="WebhookEndpoint")
class WebhookEndpointOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    disabled_reason = BlankAsNullCharField(help_text="Why it was disabled; null while active.")


class WebhookEndpointCreatedOutputSerializer(WebhookEndpointOutputSerializer):
    secret = serializers.CharField(
        help_text="`whsec_` + base64: the signing secret, shown in this answer only."
    )


@extend_schema_serializer(component_name="WebhookDelivery")
class WebhookDeliveryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event_id = serializers.CharField(source="event.uid")
    type = serializers.CharField(source="event.type")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
