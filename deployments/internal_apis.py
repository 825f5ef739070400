"""`/internal/v1/` endpoints of deployments: the provisioner's status callback."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from buddy.accounts.authentication import InternalApiView, IsProvisioner
from buddy.core.errors import NotFound
from deployments import selectors, services
from deployments.models import DeploymentStatus
from deployments.serializers import DeploymentOutputSerializer

S = DeploymentStatus


class DeploymentStatusCallbackApi(InternalApiView):
    """What the provisioner reports about an instance; idempotent."""

    permission_classes = [IsProvisioner]

    @extend_schema_serializer(component_name="DeploymentStatusCallback")
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=[S.PROVISIONING, S.READY, S.FAILED, S.STOPPED])
        endpoint_url = serializers.CharField(
            required=False, allow_null=True, allow_blank=True, max_length=500, trim_whitespace=False
        )
        reason = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=500
        )

    @extend_schema(
        operation_id="deployment_status_callback",
        request=InputSerializer,
        responses={
            200: DeploymentOutputSerializer,
            400: OpenApiResponse(description="validation_error or invalid_json"),
            403: OpenApiResponse(description="service_auth_failed"),
            404: OpenApiResponse(description="not_found"),
            409: OpenApiResponse(description="invalid_transition"),
        },
    )
    def post(self, request: Request, deployment_id: str) -> Response:
        body = request.data  # parsed first: a body that is not JSON is `invalid_json` everywhere
        if selectors.deployment_get(deployment_id=deployment_id) is None:
            raise NotFound("Deployment not found.")
        serializer = self.InputSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        deployment = services.deployment_apply_provisioner_status(
            deployment_id=deployment_id,
            status=data["status"],
            endpoint_url=data.get("endpoint_url") or None,
            reason=data.get("reason") or "",
            actor=str(request.user),  # the ServicePrincipal's actor
        )
        return Response(DeploymentOutputSerializer(deployment).data)
