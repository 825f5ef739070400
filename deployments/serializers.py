"""Input and output shapes of the console's deployment endpoints (the contract's fields)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from buddy.http.api import BlankAsNullCharField, StrictCharField, StrictIntegerField
from deployments.models import Deployment, DeploymentStatus, EventKind
from deployments.selectors import deployment_default_key_id


class TemplateOutputSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    model_id = serializers.CharField()
    pack_hours_options = serializers.ListField(child=serializers.IntegerField(min_value=1))


class DeploymentCreateInputSerializer(serializers.Serializer):
    template = StrictCharField(max_length=64, help_text="A template's slug.")
    pack_hours = StrictIntegerField(
        min_value=1, help_text="One of the template's `pack_hours_options`."
    )


class DeploymentExtendInputSerializer(serializers.Serializer):
    pack_hours = StrictIntegerField(
        min_value=1, help_text="One of the template's `pack_hours_options`."
    )


class DeploymentFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeploymentStatus.choices, required=False)


@extend_schema_serializer(component_name="Deployment")
class DeploymentOutputSerializer(serializers.Serializer):
    """The contract's deployment. Also the answer of the provisioner's status callback."""

    id = serializers.UUIDField()
    template = StrictCharField(source="template.slug", help_text="The template's slug.")
    model = serializers.CharField(source="model_id")
    status = serializers.ChoiceField(choices=DeploymentStatus.choices)
    endpoint_url = BlankAsNullCharField(help_text="Null until the deployment is first ready.")
    pack_ends_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = BlankAsNullCharField(help_text="Null until the deployment has ended.")
    default_key_id = serializers.SerializerMethodField()

    @extend_schema_field(serializers.UUIDField(allow_null=True))
    def get_default_key_id(self, deployment: Deployment) -> str | None:
        key_id = deployment_default_key_id(deployment=deployment)
        return None if key_id is None else str(key_id)


class DeploymentEventOutputSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=EventKind.choices)
    detail = serializers.DictField()
    actor = serializers.CharField()
