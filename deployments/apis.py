"""Console endpoints of templates and deployments (`/api/v1/`): thin views over the services.

A deployment that is not the caller's answers 404 exactly like one that does not exist, and that
check comes before the body is read or validated.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from buddy.http.api import (
    ConsolePagination,
    console_actor,
    console_owner_id,
    paginated_response,
    validated,
    validated_query,
)
from buddy.http.schema import error_response
from deployments import selectors, services
from deployments.models import Deployment, DeploymentStatus
from deployments.serializers import (
    DeploymentCreateInputSerializer,
    DeploymentEventOutputSerializer,
    DeploymentExtendInputSerializer,
    DeploymentFilterSerializer,
    DeploymentOutputSerializer,
    TemplateOutputSerializer,
)


def owned_deployment(request: Request, deployment_id: object) -> Deployment:
    return selectors.deployment_get_owned(
        owner_id=console_owner_id(request), deployment_id=deployment_id
    )


class TemplateListApi(APIView):
    @extend_schema(
        operation_id="templates_list",
        responses={200: TemplateOutputSerializer(many=True)},
        summary="Templates that can be deployed (a plain list, not paginated)",
    )
    def get(self, request: Request) -> Response:
        templates = selectors.template_list_active()
        return Response(TemplateOutputSerializer(templates, many=True).data)


class DeploymentListCreateApi(APIView):
    pagination_class = ConsolePagination

    @extend_schema(
        operation_id="deployments_list",
        parameters=[
            OpenApiParameter(
                "status", enum=DeploymentStatus.values, description="Only this status."
            )
        ],
        responses={
            200: DeploymentOutputSerializer(many=True),
            400: error_response("validation_error"),
        },
        summary="The caller's deployments, newest first",
    )
    def get(self, request: Request) -> Response:
        filters = validated_query(DeploymentFilterSerializer, request)
        deployments = selectors.deployment_list_for_owner(
            owner_id=console_owner_id(request), status=filters.get("status")
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=deployments,
            serializer_class=DeploymentOutputSerializer,
        )

    @extend_schema(
        operation_id="deployments_create",
        request=DeploymentCreateInputSerializer,
        responses={
            201: DeploymentOutputSerializer,
            400: error_response("invalid_json", "validation_error"),
        },
        summary="Deploy a template for a pack of hours (status `pending`)",
    )
    def post(self, request: Request) -> Response:
        data = validated(DeploymentCreateInputSerializer, request.data)
        deployment = services.deployment_create(
            owner=request.user,
            template_slug=data["template"],
            pack_hours=data["pack_hours"],
            actor=console_actor(request),
        )
        # The deployment as created (`pending`), not re-read: with in-process tasks (the embedded
        # default) the provisioner has already moved it on by the time this response is written.
        return Response(DeploymentOutputSerializer(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailApi(APIView):
    @extend_schema(
        operation_id="deployments_retrieve",
        responses={200: DeploymentOutputSerializer, 404: error_response("not_found")},
    )
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        return Response(DeploymentOutputSerializer(deployment).data)


class DeploymentStopApi(APIView):
    @extend_schema(
        operation_id="deployments_stop",
        request=None,
        responses={
            202: DeploymentOutputSerializer,
            404: error_response("not_found"),
            409: error_response("invalid_transition"),
        },
        summary="Stop the deployment (its keys are revoked)",
    )
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        request.data  # noqa: B018 - a body, if any, must be JSON (400 invalid_json)
        services.deployment_stop(deployment_id=deployment.pk, actor=console_actor(request))
        deployment = owned_deployment(request, deployment.pk)
        return Response(
            DeploymentOutputSerializer(deployment).data, status=status.HTTP_202_ACCEPTED
        )


class DeploymentExtendApi(APIView):
    @extend_schema(
        operation_id="deployments_extend",
        request=DeploymentExtendInputSerializer,
        responses={
            200: DeploymentOutputSerializer,
            400: error_response("invalid_json", "validation_error"),
            404: error_response("not_found"),
            409: error_response("invalid_transition"),
        },
        summary="Add a pack: same id, same keys, a later `pack_ends_at`",
    )
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        data = validated(DeploymentExtendInputSerializer, request.data)
        services.deployment_extend(
            deployment_id=deployment.pk, pack_hours=data["pack_hours"], actor=console_actor(request)
        )
        deployment = owned_deployment(request, deployment.pk)
        return Response(DeploymentOutputSerializer(deployment).data)


class DeploymentEventListApi(APIView):
    pagination_class = ConsolePagination

    @extend_schema(
        operation_id="deployments_events_list",
        responses={
            200: DeploymentEventOutputSerializer(many=True),
            404: error_response("not_found"),
        },
        summary="The deployment's history, newest first",
    )
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.deployment_event_list(deployment_id=deployment.pk),
            serializer_class=DeploymentEventOutputSerializer,
        )
