"""A size limit on every request body, enforced before the body is read whole (`413
request_too_large`, API.md "Operations (v2)").

Two limits: `BUDDY_GATEWAY_MAX_BODY_BYTES` (4 MiB) for the OpenAI-compatible paths (`/v1/`, and
the built-in model server `/local-model/v1/` the gateway relays those bodies to) and the proxy's
usage batches (`/internal/v1/usage`, up to 1,000 records), and
`BUDDY_MAX_BODY_BYTES` (64 KiB) for every other path (console, internal API, admin, probes).

Two places enforce them, because the servers read bodies at different times:

- `BodySizeLimitMiddleware` (Django middleware, first after the request id): a declared
  `Content-Length` over the limit is refused before any view or other middleware reads the body.
  Under WSGI that is the whole story: Django never reads more than the declared length (a
  chunked body without one is read as empty).
- `BodySizeLimit` (ASGI, wrapping the whole application in `buddy.asgi`): Django's ASGI handler
  reads the whole body (to a file once it is large) before any middleware runs, so there the
  declared length is checked before Django starts, and a body sent without one (chunked) is
  counted as it arrives and refused at the first byte over the limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from buddy.core import errors
from buddy.core.conf import per_settings
from buddy.http.dual_mode import DualModeMiddleware
from buddy.http.errors import error_json, error_response

# The OpenAI-compatible API and the built-in model server it relays to: chat bodies are large.
GATEWAY_PREFIXES = ("/v1/", "/local-model/v1/")
# Other paths with the gateway's limit: the proxy's usage batches (1,000 records, ~150 KB).
LARGE_BODY_PATHS = frozenset({"/internal/v1/usage"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def max_body_bytes(path: str) -> int:
    """The largest body accepted on `path`."""
    gateway, other = _limits()
    return gateway if path.startswith(GATEWAY_PREFIXES) or path in LARGE_BODY_PATHS else other


@per_settings
def _limits() -> tuple[int, int]:
    """The two limits, read once per process (every request asks)."""
    return int(settings.BUDDY_GATEWAY_MAX_BODY_BYTES), int(settings.BUDDY_MAX_BODY_BYTES)


def _message(limit: int) -> str:
    return f"The request body is larger than the {limit} bytes this endpoint accepts."


def declared_length(value: str | bytes | None) -> int | None:
    """The `Content-Length` as a number, None when absent or not a number."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


class BodySizeLimitMiddleware(DualModeMiddleware):
    """Refuses a request whose declared `Content-Length` is over its path's limit."""

    def __call__(self, request: HttpRequest) -> Any:
        refusal = self.refusal(request)
        if refusal is not None:
            if self.is_async:
                return self._refuse(refusal)
            return refusal
        return self.get_response(request)

    @staticmethod
    async def _refuse(response: HttpResponse) -> HttpResponse:
        return response

    @staticmethod
    def refusal(request: HttpRequest) -> HttpResponse | None:
        length = declared_length(request.META.get("CONTENT_LENGTH"))
        limit = max_body_bytes(request.path)
        if length is not None and length > limit:
            response = error_response(errors.REQUEST_TOO_LARGE, message=_message(limit))
            response["Connection"] = "close"
            return response
        return None


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: refuses an over-long body before the application reads it whole."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = max_body_bytes(scope["path"])
        headers = dict(scope.get("headers") or [])
        length = declared_length(headers.get(b"content-length"))
        if length is not None and length > limit:
            await _send_too_large(send, limit)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return message

        async def watching_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _TooLarge:
            if response_started:  # a view streaming its answer while still reading: cut it
                raise
            await _send_too_large(send, limit)


async def _send_too_large(send: Send, limit: int) -> None:
    body = error_json(errors.REQUEST_TOO_LARGE, message=_message(limit))
    await send(
        {
            "type": "http.response.start",
            "status": errors.REQUEST_TOO_LARGE.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
