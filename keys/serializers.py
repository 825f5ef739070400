"""Input and output shapes of the console's key endpoints (the contract's fields)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from buddy.http.api import BlankAsNullCharField, StrictCharField, StrictIntegerField
from buddy.usage.selectors import usage_24h_for_keys
from buddy.usage.serializers import Usage24hSerializer
from keys.models import MAX_RATE_LIMIT_RPM, MAX_RATE_LIMIT_TPM, MAX_ROLL_GRACE_SECONDS, KeyStatus

KEY_STATUSES = list(KeyStatus.values)


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
    expires_at = serializers.DateTimeField(allow_null=True, help_text="Null: never.")
    rate_limit_rpm = serializers.IntegerField(allow_null=True, help_text="Null: no limit.")
    rate_limit_tpm = serializers.IntegerField(allow_null=True, help_text="Null: no limit.")
    rolled_to = serializers.UUIDField(
        source="rolled_to_id", allow_null=True, help_text="The key that replaced it by a roll."
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


def _rpm() -> StrictIntegerField:
    return StrictIntegerField(
        min_value=1, max_value=MAX_RATE_LIMIT_RPM, allow_null=True, required=False
    )


def _tpm() -> StrictIntegerField:
    return StrictIntegerField(
        min_value=1, max_value=MAX_RATE_LIMIT_TPM, allow_null=True, required=False
    )


class KeyCreateInputSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    expires_at = serializers.DateTimeField(allow_null=True, required=False)
    rate_limit_rpm = _rpm()
    rate_limit_tpm = _tpm()


class KeyUpdateInputSerializer(serializers.Serializer):
    """Any of the fields; `null` clears a limit or the expiry. Fields not sent stay."""

    name = StrictCharField(max_length=100, required=False)
    expires_at = serializers.DateTimeField(allow_null=True, required=False)
    rate_limit_rpm = _rpm()
    rate_limit_tpm = _tpm()


class KeyRollInputSerializer(serializers.Serializer):
    grace_seconds = StrictIntegerField(
        min_value=0, max_value=MAX_ROLL_GRACE_SECONDS, required=False
    )


class KeyStatusFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=KEY_STATUSES, required=False)


class KeyFilterSerializer(KeyStatusFilterSerializer):
    deployment = serializers.UUIDField(required=False)
