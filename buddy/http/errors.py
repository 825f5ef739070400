"""The one renderer of errors: a catalogue entry (`buddy.core.errors`) becomes the contract's body

    {"error": {"message", "type", "code", "param"}}   (+ "fields" for validation errors)

`error_body` is that shape; `error_response` the JsonResponse of it; `domain_error_response` the
answer to a DomainError. Every producer answers through them: DRF's exception handler below, the
JSON-errors middleware (which also turns Django's own HTML error pages into this body, whatever
DEBUG says), `csrf_failure`, the proxy lookup, the gateway (its SSE error event included) and
readyz.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from buddy.core import errors
from buddy.core.errors import DomainError, ErrorEntry

logger = logging.getLogger("buddy.core.errors")


def error_body(
    entry: ErrorEntry,
    *,
    message: str | None = None,
    param: str | None = None,
    fields: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The contract's body for `entry`; `param` defaults to the first field in error."""
    error: dict[str, Any] = {
        "message": entry.message if message is None else message,
        "type": entry.type,
        "code": entry.code,
        "param": param if param is not None or not fields else next(iter(fields)),
    }
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


def error_json(entry: ErrorEntry, *, message: str | None = None, param: str | None = None) -> bytes:
    """The body as JSON bytes (`json.dumps`, as JsonResponse writes it): for bodies rendered once
    ahead of time, and for an SSE event."""
    return json.dumps(error_body(entry, message=message, param=param)).encode()


def error_response(
    entry: ErrorEntry,
    *,
    message: str | None = None,
    param: str | None = None,
    fields: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JsonResponse:
    response = JsonResponse(
        error_body(entry, message=message, param=param, fields=fields), status=entry.status
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def domain_error_response(exc: DomainError) -> JsonResponse:
    return error_response(exc.entry, message=exc.message, fields=exc.fields, headers=exc.headers)


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


# DRF's exceptions by class, as the catalogue names them (others go by their `default_code`).
_ENTRY_OF_DRF_EXCEPTION: dict[type[drf.APIException], ErrorEntry] = {
    drf.NotAuthenticated: errors.NOT_AUTHENTICATED,
    drf.AuthenticationFailed: errors.AUTHENTICATION_FAILED,
    drf.PermissionDenied: errors.PERMISSION_DENIED,
    drf.NotFound: errors.NOT_FOUND,
    drf.MethodNotAllowed: errors.METHOD_NOT_ALLOWED,
    drf.NotAcceptable: errors.NOT_ACCEPTABLE,
    drf.UnsupportedMediaType: errors.UNSUPPORTED_MEDIA_TYPE,
    drf.Throttled: errors.RATE_LIMITED,
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception of a DRF view becomes the contract's body.

    Whatever the error, the request's transaction (if any) is rolled back: a refused request
    changes nothing.
    """
    set_rollback()
    if isinstance(exc, DomainError):
        body = error_body(exc.entry, message=exc.message, fields=exc.fields)
        return Response(body, status=exc.entry.status, headers=dict(exc.headers) or None)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()

    if isinstance(exc, drf.ValidationError):
        fields = _validation_fields(exc.detail)
        entry = errors.VALIDATION_ERROR
        return Response(error_body(entry, fields=fields), status=entry.status)
    if isinstance(exc, drf.ParseError):
        entry = errors.INVALID_JSON
        return Response(error_body(entry), status=entry.status)
    if isinstance(exc, drf.APIException):
        headers: dict[str, str] = {}
        message = str(exc.detail if isinstance(exc.detail, str) else exc.default_detail)
        entry = _ENTRY_OF_DRF_EXCEPTION.get(type(exc)) or errors.entry_of_code(
            str(exc.default_code), exc.status_code, message
        )
        wait = getattr(exc, "wait", None) if isinstance(exc, drf.Throttled) else None
        if wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        return Response(error_body(entry, message=message), status=exc.status_code, headers=headers)
    logger.exception("unhandled error in %s", type(context.get("view")).__name__)
    entry = errors.SERVER_ERROR
    return Response(error_body(entry), status=entry.status)


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """Django's CSRF_FAILURE_VIEW (outside DRF): the contract's `csrf_failed`."""
    return error_response(errors.CSRF_FAILED)
