"""`/v1/` under WSGI (`gunicorn buddy.wsgi`): the gateway's ASGI app (`gateway.asgi`), run inside a
Django view with its answer gathered whole. Under ASGI (`buddy.asgi`, as deployed for the gateway)
`/v1/` never reaches Django; this view only keeps a WSGI server answering the same way, with the
same rules (there is one implementation of them), minus streaming as it arrives: a WSGI worker
would hold its thread for the whole stream anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from buddy.core import errors
from buddy.http.errors import error_response
from gateway import asgi, upstream
from keys.lookup import cache

SSE_HEADERS = asgi.SSE_HEADERS
_READ_CHUNK = 64 * 1024


def method_not_allowed(allowed: str) -> JsonResponse:
    return error_response(errors.METHOD_NOT_ALLOWED, headers={"Allow": allowed})


def _scope(request: HttpRequest) -> dict[str, Any]:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.items()
    ]
    # The host as Django validated it (ALLOWED_HOSTS; SERVER_NAME when no Host header was sent).
    headers = [(n, v) for n, v in headers if n != b"host"]
    headers.append((b"host", request.get_host().encode("latin-1")))
    request_id = getattr(request, "request_id", None)
    if request_id:  # the id RequestIdMiddleware chose, so both log it alike
        headers = [(n, v) for n, v in headers if n != b"x-request-id"]
        headers.append((b"x-request-id", request_id.encode()))
    return {
        "type": "http",
        "method": request.method,
        "path": request.path,
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": headers,
        "client": (request.META.get("REMOTE_ADDR", ""), 0),
    }


@csrf_exempt
async def gateway(request: HttpRequest) -> HttpResponse:
    done_reading = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal done_reading
        if done_reading:
            await never.wait()  # no disconnect to report: the answer is gathered whole
        chunk = request.read(_READ_CHUNK)
        done_reading = len(chunk) < _READ_CHUNK
        return {"type": "http.request", "body": chunk, "more_body": not done_reading}

    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], message["headers"]
        else:
            chunks.append(message.get("body", b""))

    try:
        await asgi.application(_scope(request), receive, send)
    finally:  # this event loop ends with the request: so do its connections
        await upstream.close_session()
        await cache.aclose()
    response = HttpResponse(b"".join(chunks), status=status)
    for name, value in headers:
        response[name.decode("latin-1")] = value.decode("latin-1")
    response._has_been_logged = True  # type: ignore[attr-defined]  # the gateway logged it
    return response
