"""`/internal/v1/secret-scanning`: leak reports from GitHub's secret scanning.

GitHub sends no bearer token: the ECDSA signature over the raw body is the request's
authentication, so this view takes no service token and no session, and a missing or bad
signature is `401 invalid_signature` before anything is looked at or changed.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from buddy.core.errors import InvalidSignature
from keys import leaks

_REPORT = inline_serializer(
    "LeakReport",
    fields={
        "token": serializers.CharField(),
        "type": serializers.CharField(),
        "url": serializers.CharField(required=False),
        "source": serializers.CharField(required=False),
    },
    many=True,
)
_LABELS = inline_serializer(
    "LeakLabel",
    fields={
        "token_hash": serializers.CharField(help_text="SHA-256 (hex) of the reported token."),
        "token_type": serializers.CharField(),
        "label": serializers.ChoiceField(choices=["true_positive", "false_positive"]),
    },
    many=True,
)


class SecretScanningApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="secret_scanning_report",
        request=_REPORT,
        parameters=[
            OpenApiParameter("Github-Public-Key-Identifier", location="header", required=True),
            OpenApiParameter("Github-Public-Key-Signature", location="header", required=True),
        ],
        responses={
            200: _LABELS,
            400: OpenApiResponse(description="invalid_json or validation_error"),
            401: OpenApiResponse(description="invalid_signature"),
        },
        summary="A signed leak report: reported keys of ours are revoked",
    )
    def post(self, request: Request) -> Response:
        raw = request.body  # the signed bytes, read before DRF parses them
        body = request.data  # a body that is not JSON is `invalid_json`, as everywhere
        if not leaks.leak_report_signature_valid(
            body=raw,
            key_identifier=request.headers.get("Github-Public-Key-Identifier", ""),
            signature=request.headers.get("Github-Public-Key-Signature", ""),
        ):
            raise InvalidSignature()
        return Response(leaks.leak_report_handle(reports=leaks.leak_reports_validate(body)))
