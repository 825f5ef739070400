"""Console endpoints of API keys (`/api/v1/`): thin views over the services.

A key or deployment that is not the caller's answers 404 exactly like one that does not exist,
checked before the body is read. A key's secret appears in two answers only, both `no-store`:
the 201 of its creation and the single 200 of the default key's reveal.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
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
from buddy.usage.selectors import usage_series
from buddy.usage.serializers import UsageOutputSerializer, UsageQuerySerializer, usage_series_data
from deployments.models import Deployment
from deployments.selectors import deployment_get_owned
from keys import selectors, services
from keys.models import ApiKey
from keys.serializers import (
    KEY_STATUSES,
    KeyCreatedOutputSerializer,
    KeyCreateInputSerializer,
    KeyFilterSerializer,
    KeyOutputSerializer,
    KeyRollInputSerializer,
    KeySecretOutputSerializer,
    KeyStatusFilterSerializer,
    KeyUpdateInputSerializer,
    key_usage_context,
)

_STATUS_PARAMETER = OpenApiParameter(
    "status",
    enum=KEY_STATUSES,
    description="Only active, only expired (past `expires_at`, not revoked) or only revoked keys.",
)
# A response that holds a secret must not be kept by any cache, shared or private.
_NO_STORE = {"Cache-Control": "no-store"}


def owned_key(request: Request, key_id: object) -> ApiKey:
    return selectors.key_get_owned(owner_id=console_owner_id(request), key_id=key_id)


def owned_deployment(request: Request, deployment_id: object) -> Deployment:
    return deployment_get_owned(owner_id=console_owner_id(request), deployment_id=deployment_id)


class DeploymentKeyListCreateApi(APIView):
    pagination_class = ConsolePagination

    @extend_schema(
        operation_id="deployments_keys_list",
        parameters=[_STATUS_PARAMETER],
        responses={
            200: KeyOutputSerializer(many=True),
            400: error_response("validation_error"),
            404: error_response("not_found"),
        },
        summary="The deployment's keys, newest first",
    )
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        filters = validated_query(KeyStatusFilterSerializer, request)
        keys = selectors.key_list_for_owner(
            owner_id=console_owner_id(request),
            deployment_id=deployment.pk,
            status=filters.get("status"),
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=keys,
            serializer_class=KeyOutputSerializer,
            context=key_usage_context,
        )

    @extend_schema(
        operation_id="deployments_keys_create",
        request=KeyCreateInputSerializer,
        responses={
            201: KeyCreatedOutputSerializer,
            400: error_response("invalid_json", "validation_error"),
            404: error_response("not_found"),
            409: error_response("deployment_not_ready", "key_limit_reached"),
        },
        summary="Create a key; its secret is in this answer only",
    )
    def post(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        data = validated(KeyCreateInputSerializer, request.data)
        key, secret = services.key_create(
            deployment_id=deployment.pk,
            name=data["name"],
            actor=console_actor(request),
            expires_at=data.get("expires_at"),
            rate_limit_rpm=data.get("rate_limit_rpm"),
            rate_limit_tpm=data.get("rate_limit_tpm"),
        )
        body = {**KeyOutputSerializer(key).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED, headers=_NO_STORE)


class KeyListApi(APIView):
    pagination_class = ConsolePagination

    @extend_schema(
        operation_id="keys_list",
        parameters=[
            OpenApiParameter(
                "deployment", type=OpenApiTypes.UUID, description="Only this deployment's keys."
            ),
            _STATUS_PARAMETER,
        ],
        responses={
            200: KeyOutputSerializer(many=True),
            400: error_response("validation_error"),
        },
        summary="The caller's keys of every deployment, newest first",
    )
    def get(self, request: Request) -> Response:
        filters = validated_query(KeyFilterSerializer, request)
        keys = selectors.key_list_for_owner(
            owner_id=console_owner_id(request),
            deployment_id=filters.get("deployment"),
            status=filters.get("status"),
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=keys,
            serializer_class=KeyOutputSerializer,
            context=key_usage_context,
        )


class KeyDetailApi(APIView):
    @extend_schema(
        operation_id="keys_retrieve",
        responses={200: KeyOutputSerializer, 404: error_response("not_found")},
    )
    def get(self, request: Request, key_id: str) -> Response:
        return Response(KeyOutputSerializer(owned_key(request, key_id)).data)

    @extend_schema(
        operation_id="keys_update",
        request=KeyUpdateInputSerializer,
        responses={
            200: KeyOutputSerializer,
            400: error_response("invalid_json", "validation_error"),
            404: error_response("not_found"),
            409: error_response("key_revoked", "key_expired"),
        },
        summary="Change a key's name, expiry or limits (null clears); lookups follow at once",
    )
    def patch(self, request: Request, key_id: str) -> Response:
        key = owned_key(request, key_id)
        data = validated(KeyUpdateInputSerializer, request.data)
        key = services.key_update(key_id=key.pk, actor=console_actor(request), **data)
        return Response(KeyOutputSerializer(key).data)


class KeyRollApi(APIView):
    @extend_schema(
        operation_id="keys_roll",
        request=KeyRollInputSerializer,
        responses={
            201: KeyCreatedOutputSerializer,
            400: error_response("invalid_json", "validation_error"),
            404: error_response("not_found"),
            409: error_response("key_revoked", "key_expired"),
        },
        summary="Replace the key: a new key (its secret in this answer only); the old one "
        "expires after the grace period",
    )
    def post(self, request: Request, key_id: str) -> Response:
        key = owned_key(request, key_id)
        data = validated(KeyRollInputSerializer, request.data or {})
        new, secret = services.key_roll(
            key_id=key.pk,
            actor=console_actor(request),
            grace_seconds=data.get("grace_seconds", services.DEFAULT_ROLL_GRACE_SECONDS),
        )
        body = {**KeyOutputSerializer(new).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED, headers=_NO_STORE)


class KeyRevealApi(APIView):
    @extend_schema(
        operation_id="keys_reveal",
        request=None,
        responses={
            200: KeySecretOutputSerializer,
            404: error_response("not_found"),
            409: error_response("key_revoked"),
            410: error_response("secret_already_shown", "secret_expired"),
        },
        summary="The default key's secret, once",
    )
    def post(self, request: Request, key_id: str) -> Response:
        key = owned_key(request, key_id)
        request.data  # noqa: B018 - a body, if any, must be JSON (400 invalid_json)
        secret = services.key_reveal_default(key_id=key.pk, actor=console_actor(request))
        return Response({"secret": secret}, headers=_NO_STORE)


class KeyRevokeApi(APIView):
    @extend_schema(
        operation_id="keys_revoke",
        request=None,
        responses={200: KeyOutputSerializer, 404: error_response("not_found")},
        summary="Revoke the key for good (revoking twice is 200)",
    )
    def post(self, request: Request, key_id: str) -> Response:
        key = owned_key(request, key_id)
        request.data  # noqa: B018 - a body, if any, must be JSON (400 invalid_json)
        key = services.key_revoke(key_id=key.pk, actor=console_actor(request))
        return Response(KeyOutputSerializer(key).data)


_USAGE_PARAMETERS = [
    OpenApiParameter("granularity", enum=["hour", "day"], description="Default hour."),
    OpenApiParameter(
        "since",
        type=OpenApiTypes.DATETIME,
        description="ISO 8601 (UTC when no offset). Default: 24 h (hour) or 30 days (day) "
        "before until; at most 31 days of hours, 400 days of days.",
    ),
    OpenApiParameter("until", type=OpenApiTypes.DATETIME, description="Default: now."),
]


class KeyUsageApi(APIView):
    @extend_schema(
        operation_id="keys_usage",
        parameters=_USAGE_PARAMETERS,
        responses={
            200: UsageOutputSerializer,
            400: error_response("validation_error"),
            404: error_response("not_found"),
        },
        summary="The key's requests and tokens, by UTC hour or day",
    )
    def get(self, request: Request, key_id: str) -> Response:
        key = owned_key(request, key_id)
        query = validated_query(UsageQuerySerializer, request)
        return Response(usage_series_data(usage_series(key_id=key.pk, **query)))


class DeploymentUsageApi(APIView):
    @extend_schema(
        operation_id="deployments_usage",
        parameters=_USAGE_PARAMETERS,
        responses={
            200: UsageOutputSerializer,
            400: error_response("validation_error"),
            404: error_response("not_found"),
        },
        summary="The deployment's requests and tokens (all its keys), by UTC hour or day",
    )
    def get(self, request: Request, deployment_id: str) -> Response:
        deployment = owned_deployment(request, deployment_id)
        query = validated_query(UsageQuerySerializer, request)
        return Response(usage_series_data(usage_series(deployment_id=deployment.pk, **query)))
