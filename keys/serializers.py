"""Input and output shapes of the console's key endpoints (the contract's fields)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from buddy.http.api import BlankAsNullCharField, StrictCharField
from usage.selectors import usage_24h_for_keys
from usage.serializers import Usage24hSerializer

KEY_STATUSES = ["active", "revoked"]


class KeyOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    deployment = serializers.UUIDField(source="deployment_id", allow_null=True)
    name = serializers.CharField()
    public_id = serializers.CharField()
    masked = serializers.CharField(help_text="`ob_sk_<public id>…`")
    is_default = serializers.BooleanField()
    status = serializers.ChoiceField(choices=KEY_STATUSES)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoke_reason = BlankAsNullCharField(help_text="Null while the key is active.")
    secret_available = serializers.BooleanField(
        help_text="A default key whose secret can still be revealed (once)."
    )
    usage_24h = serializers.SerializerMethodField()

    @extend_schema_field(Usage24hSerializer)
    def get_usage_24h(self, key: Any) -> dict[str, int]:
        """From the page's one aggregate query (context `usage_24h`, see `key_usage_context`),
        else this key's own."""
        found = self.context.get("usage_24h")
        if found is None:
            found = usage_24h_for_keys(key_ids=[key.pk])
        totals = found.get(key.pk)
        if totals is None:
            return {"requests": 0, "total_tokens": 0}
        return {"requests": totals.requests, "total_tokens": totals.total_tokens}


def key_usage_context(keys: Any) -> dict[str, Any]:
    """The serializer context of a page of keys: their last 24 h of usage in one query."""
    return {"usage_24h": usage_24h_for_keys(key_ids=[key.pk for key in keys])}


class KeyCreatedOutputSerializer(KeyOutputSerializer):
    secret = serializers.CharField(help_text="The key itself: shown in this answer only.")


class KeySecretOutputSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The default key itself: shown in this answer only.")


class KeyCreateInputSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)


class KeyStatusFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=KEY_STATUSES, required=False)


class KeyFilterSerializer(KeyStatusFilterSerializer):
    deployment = serializers.UUIDField(required=False)
