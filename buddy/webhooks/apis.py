"""Console endpoints of webhooks (`/api/v1/webhooks…`): thin views over the services.

Another user's endpoint answers 404 like a missing one, checked before the body is read. The
signing secret appears in one answer only, the 201 of the endpoint's creation, `no-store`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from buddy.http.api import ConsolePagination, console_owner_id, paginated_response, validated
from buddy.http.schema import error_response
from buddy.webhooks import selectors, services
from buddy.webhooks.models import WebhookEndpoint
from buddy.webhooks.serializers import (
    WebhookDeliveryOutputSerializer,
    WebhookEndpointCreatedOutputSerializer,
    WebhookEndpointCreateInputSerializer,
    WebhookEndpointOutputSerializer,
)

_NO_STORE = {"Cache-Control": "no-store"}


def owned_endpoint(request: Request, endpoint_id: object) -> WebhookEndpoint:
    return selectors.webhook_endpoint_get_owned(
        owner_id=console_owner_id(request), endpoint_id=endpoint_id
    )


class WebhookListCreateApi(APIView):
    pagination_class = ConsolePagination

    @extend_schema(
        operation_id="webhooks_list",
        responses={200: WebhookEndpointOutputSerializer(many=True)},
        summary="The caller's webhook endpoints, newest first",
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.webhook_endpoint_list_for_owner(owner_id=console_owner_id(request)),
            serializer_class=WebhookEndpointOutputSerializer,
        )

    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookEndpointCreateInputSerializer,
        responses={
            201: WebhookEndpointCreatedOutputSerializer,
            400: error_response("invalid_json", "validation_error"),
            409: error_response("webhook_limit_reached"),
        },
        summary="Register an endpoint; its signing secret is in this answer only",
    )
    def post(self, request: Request) -> Response:
        data = validated(WebhookEndpointCreateInputSerializer, request.data)
        endpoint, secret = services.webhook_endpoint_create(
            owner_id=console_owner_id(request), url=data["url"], events=data["events"]
        )
        body = {**WebhookEndpointOutputSerializer(endpoint).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED, headers=_NO_STORE)


class WebhookDetailApi(APIView):
    @extend_schema(
        operation_id="webhooks_retrieve",
        responses={200: WebhookEndpointOutputSerializer, 404: error_response("not_found")},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(WebhookEndpointOutputSerializer(owned_endpoint(request, endpoint_id)).data)

    @extend_schema(
        operation_id="webhooks_destroy",
        responses={204: None, 404: error_response("not_found")},
        summary="Delete the endpoint (nothing more is sent to it)",
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        services.webhook_endpoint_delete(endpoint=owned_endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTestApi(APIView):
    @extend_schema(
        operation_id="webhooks_test",
        request=None,
        responses={202: None, 404: error_response("not_found")},
        summary="Send a ping event to the endpoint",
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = owned_endpoint(request, endpoint_id)
        request.data  # noqa: B018 - a body, if any, must be JSON (400 invalid_json)
        services.webhook_endpoint_ping(endpoint=endpoint)
        return Response(status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListApi(APIView):
    pagination_class = ConsolePagination

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        responses={
            200: WebhookDeliveryOutputSerializer(many=True),
            404: error_response("not_found"),
        },
        summary="The endpoint's deliveries, newest event first",
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = owned_endpoint(request, endpoint_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.webhook_delivery_list(endpoint=endpoint),
            serializer_class=WebhookDeliveryOutputSerializer,
        )
