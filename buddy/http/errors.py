"""One shape for every error of every endpoint (the contract's, OpenAI's):

    {"error": {"message", "type", "code", "param"}}   (+ "fields" for validation errors)

`api_exception_handler` serves DRF views; `handler400/403/404/500` and `csrf_failure` serve what
Django answers outside DRF, so no HTML error page or stack trace reaches a client, whatever DEBUG
says.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from buddy.core.errors import DomainError

logger = logging.getLogger("buddy.core.errors")

# OpenAI's types, as the contract lists them: 401 and 403 (missing, wrong or insufficient
# credentials, CSRF) are authentication errors; every other 4xx is an invalid request.
_TYPE_OF_STATUS = {
    401: "authentication_error",
    403: "authentication_error",
    429: "rate_limit_error",
}


def error_body(
    *,
    status: int,
    code: str,
    message: str,
    param: str | None = None,
    fields: dict[str, Any] | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": error_type
        or _TYPE_OF_STATUS.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        ),
        "code": code,
        "param": param,
    }
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JsonResponse:
    response = JsonResponse(
        error_body(status=status, code=code, message=message, **extra), status=status
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten(detail: Any) -> dict[str, list[str]]:
    """DRF validation detail as {"field": ["message", ...]} (nested fields joined with dots)."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for name, value in detail.items():
            for sub, messages in _flatten(value).items():
                key = str(name) if sub == "" else f"{name}.{sub}"
                out.setdefault(key, []).extend(messages)
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {"": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            for sub, messages in _flatten(item).items():
                key = str(index) if sub == "" else f"{index}.{sub}"
                out.setdefault(key, []).extend(messages)
        return out
    return {"": [str(detail)]}


def _validation_fields(detail: Any) -> dict[str, list[str]]:
    fields = _flatten(detail)
    if "" in fields:
        fields["non_field_errors"] = fields.pop("") + fields.get("non_field_errors", [])
    return fields


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception of a DRF view becomes the contract's body.

    Whatever the error, the request's transaction (if any) is rolled back: a refused request
    changes nothing.
    """
    set_rollback()
    headers: dict[str, str] = {}
    if isinstance(exc, DomainError):
        fields = getattr(exc, "fields", None)
        body = error_body(
            status=exc.status_code,
            code=exc.code,
            message=exc.message,
            fields=fields,
            param=next(iter(fields), None) if fields else None,
            error_type=exc.error_type,
        )
        return Response(body, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()

    if isinstance(exc, drf.ValidationError):
        fields = _validation_fields(exc.detail)
        body = error_body(
            status=400,
            code="validation_error",
            message="The request is not valid.",
            fields=fields,
            param=next(iter(fields), None),
        )
        return Response(body, status=400)
    if isinstance(exc, drf.ParseError):
        body = error_body(status=400, code="invalid_json", message="The body is not valid JSON.")
        return Response(body, status=400)
    if isinstance(exc, drf.APIException):
        status = exc.status_code
        code = {
            drf.NotAuthenticated: "not_authenticated",
            drf.AuthenticationFailed: "authentication_failed",
            drf.PermissionDenied: "permission_denied",
            drf.NotFound: "not_found",
            drf.MethodNotAllowed: "method_not_allowed",
            drf.NotAcceptable: "not_acceptable",
            drf.UnsupportedMediaType: "unsupported_media_type",
            drf.Throttled: "rate_limited",
        }.get(type(exc), str(exc.default_code))
        wait = getattr(exc, "wait", None) if isinstance(exc, drf.Throttled) else None
        if wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        message = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        return Response(
            error_body(status=status, code=code, message=str(message)),
            status=status,
            headers=headers,
        )
    logger.exception("unhandled error in %s", type(context.get("view")).__name__)
    return Response(
        error_body(status=500, code="server_error", message="Internal server error."), status=500
    )


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(400, "bad_request", "Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(403, "permission_denied", "Permission denied.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    return error_response(500, "server_error", "Internal server error.")


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    return error_response(403, "csrf_failed", "CSRF verification failed.")
