"""Console sign-in and sign-out: `POST /api/v1/auth/token`, `/auth/logout`, `/auth/logout-all`."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from buddy.accounts.services import (
    console_sign_out,
    console_sign_out_everywhere,
    console_token_create,
)
from buddy.accounts.throttles import TokenFailureThrottle
from buddy.core.errors import InvalidCredentials
from buddy.http.api import StrictCharField, validated
from buddy.http.schema import error_response


class TokenCreateInputSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, trim_whitespace=False)
    password = StrictCharField(max_length=4096, trim_whitespace=False)


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`.")


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class TokenCreateApi(APIView):
    # No session here: the token is the credential being asked for, and no CSRF applies.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenFailureThrottle]

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenCreateInputSerializer,
        responses={
            201: TokenOutputSerializer,
            400: error_response("invalid_json", "validation_error"),
            401: error_response("invalid_credentials"),
            429: error_response("rate_limited"),
        },
        auth=[],
        summary="A console token for a username and password",
    )
    def post(self, request: Request) -> Response:
        data = validated(TokenCreateInputSerializer, request.data)
        try:
            token = console_token_create(
                request=request._request, username=data["username"], password=data["password"]
            )
        except InvalidCredentials:
            TokenFailureThrottle().record_failure(request, self)
            raise
        return Response(
            {"token": token}, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"}
        )


class LogoutApi(APIView):
    """Signs out what made the call: revokes its console token, or ends its session."""

    @extend_schema(
        operation_id="auth_logout",
        request=None,
        responses={204: None},
        summary="Sign out: revoke the calling console token (or end the session)",
    )
    def post(self, request: Request) -> Response:
        console_sign_out(request=request._request, token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllApi(APIView):
    """Signs the user out everywhere: every console token of theirs is revoked."""

    @extend_schema(
        operation_id="auth_logout_all",
        request=None,
        responses={204: None},
        summary="Sign out everywhere: revoke every console token of the user",
    )
    def post(self, request: Request) -> Response:
        user = request.user
        assert isinstance(user, AbstractBaseUser)  # IsAuthenticated: never AnonymousUser here
        console_sign_out_everywhere(request=request._request, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
