"""`/internal/v1/` endpoints of keys other than the lookup: the proxy's usage reports, and leak
reports from GitHub's secret scanning.

GitHub sends no bearer token: the ECDSA signature over the raw body is the leak report's
authentication, so `SecretScanningApi` takes no service token and no session, and a missing or bad
signature is `401 invalid_signature` before anything is looked at or changed.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from buddy.accounts.authentication import InternalApiView, IsProxy
from buddy.core.errors import InvalidSignature
from buddy.http.api import StrictCharField, StrictIntegerField, validated
from keys import leaks
from keys.metering import ReportedUsage, usage_report

MAX_RECORDS = 1000
# Far above any real count, far below a 64-bit column's overflow after many additions.
MAX_COUNT = 10**12


class UsageRecordSerializer(serializers.Serializer):
    key_id = StrictCharField(max_length=100, help_text="A key's id; unknown ids are skipped.")
    requests = StrictIntegerField(min_value=0, max_value=MAX_COUNT)
    prompt_tokens = StrictIntegerField(min_value=0, max_value=MAX_COUNT)
    completion_tokens = StrictIntegerField(min_value=0, max_value=MAX_COUNT)


class UsageReportSerializer(serializers.Serializer):
    batch_id = StrictCharField(max_length=64)
    records = serializers.ListField(
        child=UsageRecordSerializer(), min_length=1, max_length=MAX_RECORDS
    )

    def to_internal_value(self, data: Any) -> Any:
        # Checked first: never validate a million records to refuse the list's length.
        records = data.get("records") if isinstance(data, dict) else None
        if isinstance(records, list) and len(records) > MAX_RECORDS:
            raise serializers.ValidationError(
                {"records": [f"Ensure this field has no more than {MAX_RECORDS} elements."]}
            )
        return super().to_internal_value(data)


class UsageReportApi(InternalApiView):
    """What the proxy relayed, in batches (contract: "Usage")."""

    permission_classes = [IsProxy]

    @extend_schema(
        operation_id="usage_report",
        request=UsageReportSerializer,
        responses={
            202: inline_serializer("UsageReportAccepted", {"accepted": serializers.IntegerField()}),
            400: OpenApiResponse(description="validation_error or invalid_json"),
            403: OpenApiResponse(description="service_auth_failed"),
        },
        tags=["internal"],
    )
    def post(self, request: Request) -> Response:
        data = validated(UsageReportSerializer, request.data)
        accepted = usage_report(
            batch_id=data["batch_id"],
            records=[ReportedUsage(**record) for record in data["records"]],
        )
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


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
