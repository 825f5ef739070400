"""The OpenAI-compatible gateway: `POST /v1/chat/completions` and `GET /v1/models`.

Async views (served by an ASGI server on `buddy.asgi`): waiting minutes for a model server holds a
coroutine, not a thread. The one blocking step, the key lookup (ORM, and an argon2 verify on a cache
miss), runs in the event loop's thread pool through `sync_to_async(thread_sensitive=False)`:
- lookups of concurrent requests run in parallel (argon2 releases the GIL), instead of queueing on
  one thread;
- the pool's threads live as long as the process, so each keeps one persistent database connection
  (at most one per pool thread) rather than opening one per request, which Django's per-request
  thread for `thread_sensitive=True` code would do under ASGI;
- `close_old_connections()` around each call gives those connections the hygiene Django's request
  signals give a request thread's (age limit, health check, drop after an error).

Order of answers: `invalid_json`, then the lookup's table (`missing_api_key`, 401, 404, 409,
`model_mismatch`), then the body's validation (400 `validation_error`), then the upstream
(502 `upstream_error`, 504 `upstream_timeout`, or its refusal relayed). So no one without a valid
key learns anything about the body, and nothing reaches a model server that fails validation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from buddy.core import errors
from buddy.core.errors import DomainError
from buddy.http.errors import domain_error_response, error_json, error_response
from buddy.ops.metrics import observe_lookup
from deployments.selectors import deployment_get
from gateway import upstream
from gateway.validation import parse_json_object, validate_chat_request
from keys.lookup.outcomes import LookupOutcome, LookupResult
from keys.lookup.selectors import key_lookup

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# Counted and timed in /metrics like the internal endpoint's lookups.
_observed_lookup = observe_lookup(key_lookup)


def _lookup_in_pool_thread(
    authorization: str | None, model: str | None, client_ip: str | None = None
) -> LookupResult:
    close_old_connections()
    try:
        return _observed_lookup(authorization=authorization, model=model, client_ip=client_ip)
    finally:
        close_old_connections()


def _deployment_created_at(deployment_id: str) -> int:
    close_old_connections()
    try:
        deployment = deployment_get(deployment_id=deployment_id)
        return int(deployment.created_at.timestamp()) if deployment else 0
    finally:
        close_old_connections()


_lookup = sync_to_async(_lookup_in_pool_thread, thread_sensitive=False)
_created_at = sync_to_async(_deployment_created_at, thread_sensitive=False)


def lookup_error_response(result: LookupResult) -> JsonResponse:
    """The lookup's refusal, as the gateway answers it (OpenAI's habits: `param` names the model,
    a 401 says how to authenticate, a 429 when to retry)."""
    outcome = result.outcome
    assert outcome.error is not None, "a refusal has an error"
    headers: dict[str, str] = {}
    if outcome is LookupOutcome.RATE_LIMITED and result.retry_after is not None:
        headers["Retry-After"] = str(result.retry_after)
    if outcome.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="buddy"'
    return error_response(
        outcome.error,
        param="model" if outcome is LookupOutcome.MODEL_MISMATCH else None,
        headers=headers,
    )


def method_not_allowed(allowed: str) -> JsonResponse:
    return error_response(errors.METHOD_NOT_ALLOWED, headers={"Allow": allowed})


def sse_error(failure: DomainError) -> bytes:
    """An error after the stream has started: the status is sent, so it goes in an event (the
    OpenAI SDKs raise an APIError for a `data:` event that carries `error`)."""
    return b"data: " + error_json(failure.entry, message=failure.message) + b"\n\n"


async def relay_stream(response: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream's bytes as they arrive, never gathered; closes the upstream however it ends
    (including when the client goes away and Django cancels the response)."""
    try:
        async for chunk in response.aiter_bytes():
            if chunk:
                yield chunk
    except httpx.HTTPError as exc:
        logger.warning("upstream stream broke off: %s", type(exc).__name__)
        yield sse_error(upstream.transport_failure(exc))
    finally:
        await response.aclose()


async def _read_body(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    try:
        raw = request.body
    except RequestDataTooBig:
        return error_response(errors.REQUEST_TOO_LARGE, message="The request body is too large.")
    try:
        return parse_json_object(raw)
    except DomainError as exc:
        return domain_error_response(exc)


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return method_not_allowed("POST")
    body = await _read_body(request)
    if isinstance(body, JsonResponse):
        return body
    model = body.get("model")
    result = await _lookup(
        request.headers.get("Authorization"),
        model if isinstance(model, str) else None,
        request.META.get("REMOTE_ADDR"),
    )
    if not result.ok or result.snapshot is None:
        return lookup_error_response(result)
    try:
        chat = validate_chat_request(body)
    except DomainError as exc:
        return domain_error_response(exc)
    endpoint_url = result.snapshot.endpoint_url
    try:
        if not chat.stream:
            content = await upstream.chat_completion(endpoint_url=endpoint_url, body=chat.body)
            return HttpResponse(content, content_type="application/json")
        response = await upstream.open_chat_stream(endpoint_url=endpoint_url, body=chat.body)
    except upstream.UpstreamFailure as exc:
        logger.warning(
            "upstream of deployment %s failed: %s %s",
            result.snapshot.deployment_id,
            exc.entry.status,
            exc.entry.code,
        )
        return domain_error_response(exc)
    return StreamingHttpResponse(
        relay_stream(response),
        content_type=response.headers.get("Content-Type", "text/event-stream"),
        headers=SSE_HEADERS,
    )


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    """The model the key's deployment serves (a key routes to exactly one)."""
    if request.method != "GET":
        return method_not_allowed("GET")
    result = await _lookup(
        request.headers.get("Authorization"), None, request.META.get("REMOTE_ADDR")
    )
    if not result.ok or result.snapshot is None or result.snapshot.deployment_id is None:
        return lookup_error_response(result)
    created = await _created_at(result.snapshot.deployment_id)
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": result.snapshot.model,
                    "object": "model",
                    "created": created,
                    "owned_by": "buddy",
                }
            ],
        }
    )
