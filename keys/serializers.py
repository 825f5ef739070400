"""Input and output shapes of the console's key endpoints (the contract's fields)."""

from __future__ import annotations

from rest_framework import serializers

from buddy.http.api import BlankAsNullCharField, StrictCharField, StrictIntegerField
from keys.models import KeyStatus
from keys.services import MAX_RATE_LIMIT_RPM, MAX_RATE_LIMIT_TPM, MAX_ROLL_GRACE_SECONDS

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
