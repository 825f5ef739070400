"""Input and output shapes of the console's key endpoints (the contract's fields)."""

from __future__ import annotations

from rest_framework import serializers

from buddy.http.api import BlankAsNullCharField, StrictCharField

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
