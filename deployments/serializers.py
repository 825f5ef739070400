"""Serializers of deployments shared by the console API and the internal API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from deployments.models import Deployment


@extend_schema_serializer(component_name="Deployment")
class DeploymentOutputSerializer(serializers.Serializer):
    """The contract's deployment: `{id, template, model, status, endpoint_url, pack_ends_at,
    created_at, updated_at, ended_at, end_reason, default_key_id}`."""

    id = serializers.UUIDField(read_only=True)
    template = serializers.CharField(source="template.slug", read_only=True)
    model = serializers.CharField(source="model_id", read_only=True)
    status = serializers.CharField(read_only=True)
    endpoint_url = serializers.SerializerMethodField()
    pack_ends_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    ended_at = serializers.DateTimeField(read_only=True, allow_null=True)
    end_reason = serializers.SerializerMethodField()
    default_key_id = serializers.SerializerMethodField()

    def get_endpoint_url(self, deployment: Deployment) -> str | None:
        return deployment.endpoint_url or None

    def get_end_reason(self, deployment: Deployment) -> str | None:
        return deployment.end_reason or None

    def get_default_key_id(self, deployment: Deployment) -> str | None:
        # A list view can annotate `default_key_pk` to save the query per row.
        pk = getattr(deployment, "default_key_pk", None)
        if pk is None:
            pk = deployment.keys.filter(is_default=True).values_list("pk", flat=True).first()
        return None if pk is None else str(pk)
