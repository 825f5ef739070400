"""OpenAPI (drf-spectacular): the contract's error body documented on every operation."""

from __future__ import annotations

from typing import Any

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.ChoiceField(
        choices=[
            "invalid_request_error",
            "authentication_error",
            "rate_limit_error",
            "server_error",
        ]
    )
    code = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    fields = serializers.DictField(  # type: ignore[assignment]  # the body's `fields` member
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: messages per field.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def error_response(*codes: str) -> OpenApiResponse:
    """An error response of the contract's shape, listing its `code` values."""
    return OpenApiResponse(
        response=ErrorSerializer, description="Error codes: " + ", ".join(f"`{c}`" for c in codes)
    )


class BuddyAutoSchema(AutoSchema):
    """Adds the errors every operation can answer, on top of the ones a view declares."""

    def get_tags(self) -> list[str]:
        # `/api/v1/keys/...` -> "keys", `/internal/v1/deployments/...` -> "internal"
        parts = [p for p in self._tokenize_path() if p not in {"api", "v1"}]
        if parts and parts[0] == "internal":
            return ["internal"]
        return parts[:1] or super().get_tags()

    def _common_errors(self) -> dict[str, OpenApiResponse]:
        errors: dict[str, OpenApiResponse] = {}
        if self.method in {"POST", "PUT", "PATCH"}:
            errors["400"] = error_response("invalid_json", "validation_error")
        permissions = getattr(self.view, "permission_classes", [])
        if not all(p is AllowAny for p in permissions):
            errors["401"] = error_response("not_authenticated", "authentication_failed")
            errors["403"] = error_response("csrf_failed", "permission_denied")
        if "{" in self.path or (self.method == "GET" and self._is_list_view()):
            errors["404"] = error_response("not_found")
        if getattr(self.view, "throttle_classes", None):
            errors["429"] = error_response("rate_limited")
        errors["500"] = error_response("server_error")
        return errors

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for status, response in self._common_errors().items():
            if status not in responses:
                responses[status] = self._get_response_for_code(
                    response, status, direction=direction
                )
        return responses


class CsrfSessionScheme(SessionScheme):
    target_class = "buddy.http.api.CsrfSessionAuthentication"
    name = "cookieAuth"
