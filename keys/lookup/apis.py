"""`POST /internal/v1/auth/lookup`: the proxy asks which deployment a client's key routes to.

This is buddy's hot path (every chat request of the fleet), so the view is a lean Django view:
`dispatch` is overridden and none of DRF's request wrapping, content negotiation,
authentication/permission/throttle classes or renderers run. The class stays an `APIView` only so
that `@extend_schema` documents it in `/api/schema`. What DRF would have done is done here by
hand, with the same results: the service token (role `proxy`) is checked first
(`403 service_auth_failed`), then the JSON body (`400 invalid_json`), then `key_lookup` answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from buddy.accounts.models import ServiceRole
from buddy.accounts.selectors import service_token_authenticate_cached
from buddy.core import errors
from buddy.http.errors import error_json, error_response
from buddy.ops import metrics
from keys.lookup import ratelimit
from keys.lookup.outcomes import LookupOutcome, LookupResult
from keys.lookup.selectors import key_lookup

_PROXY = ServiceRole.PROXY.value
_NO_STORE = "no-store"


# Every refusal's body, rendered once: a refusal costs no JSON encoding.
_REFUSAL_BODIES: dict[str, bytes] = {
    outcome.code: error_json(outcome.error) for outcome in LookupOutcome if outcome.error
}
_FORBIDDEN_BODY = error_json(errors.SERVICE_AUTH_FAILED)


# The 200 bodies already encoded, by their content (so never stale): the proxy asks about the
# same keys over and over. Bounded: emptied when full.
_ANSWERS: dict[tuple[Any, ...], bytes] = {}


def _answer_json(result: LookupResult) -> bytes:
    snapshot = result.snapshot
    assert snapshot is not None, "an OK outcome without its snapshot"
    content = (snapshot.deployment_id, snapshot.model, snapshot.endpoint_url, snapshot.key_id)
    body = _ANSWERS.get(content)
    if body is None:
        body = json.dumps(result.body()).encode()
        if len(_ANSWERS) >= 4096:
            _ANSWERS.clear()
        _ANSWERS[content] = body
    return body


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """A lookup's answer before any server renders it: status, JSON body and the headers after
    `Content-Type: application/json` (`lookup` makes an `HttpResponse` of it, the WSGI front its
    own start line and header list)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


_FORBIDDEN = LookupAnswer(errors.SERVICE_AUTH_FAILED.status, _FORBIDDEN_BODY)
_NO_STORE_HEADERS: tuple[tuple[str, str], ...] = (("Cache-Control", _NO_STORE),)


class AuthLookupApi(APIView):
    """The proxy's auth lookup (contract: "Proxy auth lookup")."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    @extend_schema(
        operation_id="auth_lookup",
        summary="Which deployment does a client's API key route to (for the proxy)",
        request=inline_serializer(
            "AuthLookupRequest",
            {
                "authorization": serializers.CharField(required=False, allow_null=True),
                "model": serializers.CharField(required=False, allow_null=True),
                "client_ip": serializers.CharField(required=False, allow_null=True),
            },
        ),
        responses={
            200: inline_serializer(
                "AuthLookupResponse",
                {
                    "deployment_id": serializers.UUIDField(),
                    "model": serializers.CharField(),
                    "endpoint_url": serializers.URLField(),
                    "key_id": serializers.UUIDField(),
                },
            ),
            400: OpenApiResponse(description="invalid_json, missing_api_key, model_mismatch"),
            401: OpenApiResponse(description="invalid_api_key, revoked_api_key, expired_api_key"),
            403: OpenApiResponse(description="service_auth_failed"),
            404: OpenApiResponse(description="deployment_not_found"),
            409: OpenApiResponse(
                description="deployment_not_ready, deployment_stopped, deployment_failed, "
                "deployment_terminated"
            ),
            429: OpenApiResponse(
                description="rate_limited, rate_limit_exceeded (both with Retry-After)"
            ),
        },
        tags=["internal"],
    )
    def post(self, request: HttpRequest) -> HttpResponse:  # documentation only: see dispatch
        return lookup(request)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return dispatch_lookup(request)


def dispatch_lookup(request: HttpRequest) -> HttpResponse:
    """The endpoint, method check included (also reached from `keys.lookup.middleware`)."""
    if request.method != "POST":
        return error_response(errors.METHOD_NOT_ALLOWED, headers={"Allow": "POST"})
    return lookup(request)


def lookup(request: HttpRequest) -> HttpResponse:
    answer = lookup_answer(
        authorization=request.META.get("HTTP_AUTHORIZATION"), read_body=lambda: request.body
    )
    response = HttpResponse(answer.body, status=answer.status, content_type="application/json")
    for name, value in answer.headers:
        response[name] = value
    # A refused key or service token is this endpoint's ordinary business, not a server event:
    # Django's "Unauthorized: /internal/v1/auth/lookup" warning on every refusal would only cost
    # CPU and log volume on the hot path (a caller hammering with a wrong token would turn each
    # cheap refusal into a log line).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def lookup_answer(*, authorization: object, read_body: Callable[[], bytes]) -> LookupAnswer:
    """The endpoint's answer to a POST: the service token (role `proxy`) first, then the body
    (read only past the token, by `read_body`), then `key_lookup`. Counted in the metrics."""
    started = time.perf_counter()
    token = service_token_authenticate_cached(authorization=authorization)
    if token is None or token.role != _PROXY:
        metrics.record_lookup("service_auth_failed", time.perf_counter() - started)
        return _FORBIDDEN
    try:
        body = json.loads(read_body())
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deeply: invalid_json
        body = None
    if not isinstance(body, dict):
        result = LookupResult(LookupOutcome.INVALID_JSON)
    else:
        result = key_lookup(
            authorization=body.get("authorization"),
            model=body.get("model"),
            client_ip=body.get("client_ip"),
        )
    outcome = result.outcome
    metrics.record_lookup(outcome.code, time.perf_counter() - started)
    headers = _NO_STORE_HEADERS
    if result.retry_after:
        headers += (("Retry-After", str(result.retry_after)),)
    if result.rate is not None:
        headers += tuple(ratelimit.headers(result.snapshot, result.rate).items())
    return LookupAnswer(
        outcome.status,
        _answer_json(result) if outcome.error is None else _REFUSAL_BODIES[outcome.code],
        headers,
    )
