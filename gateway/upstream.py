"""The gateway's client of model servers: OpenAI-compatible upstreams (Ollama, vLLM, the built-in
local model) at `{endpoint_url}/v1/chat/completions`.

What goes upstream is the validated body and, when `BUDDY_UPSTREAM_API_KEY` is set, that credential;
never the client's headers (so never its `ob_sk_` key). Failures become `UpstreamFailure`s with the
status and code the gateway answers: 502 `upstream_error` for an unreachable or failing upstream,
504 `upstream_timeout` when it does not answer in time, and the upstream's own refusal of a request
(400 or 429) relayed with its message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from buddy.core import errors
from buddy.core.conf import per_settings
from buddy.core.errors import DomainError, ErrorEntry
from gateway import client
from gateway.client import Response

# How much of an upstream's error body is read to find its message.
_ERROR_BODY_LIMIT = 64 * 1024
_MESSAGE_LIMIT = 1000
# Upstream statuses that say the client's request is at fault, and what the gateway answers.
_RELAYED_STATUSES = {400: 400, 413: 400, 422: 400, 429: 429}
# What talking to an upstream can raise: the client's transport errors, and its timeouts.
TRANSPORT_ERRORS = (client.TransportError, TimeoutError)
# Idle keep-alive connections to model servers are closed after this long.
_KEEPALIVE_SECONDS = 30.0


class UpstreamFailure(DomainError):
    """What the gateway answers for a failed upstream call: 502 `upstream_error` unless told
    otherwise, with the upstream's `Retry-After` when it relays a 429."""

    entry = errors.UPSTREAM_ERROR

    def __init__(
        self, message: str, *, entry: ErrorEntry | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message, entry=entry)
        self.retry_after = retry_after

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after else {}


async def close_session() -> None:
    """Close this event loop's connections (for loops that end with their request:
    `gateway.views`)."""
    client.close_pool()


@per_settings
def _timeouts() -> tuple[float, float]:
    """(connect, read): `read` bounds each wait for the next piece of the answer, not the whole
    answer: a long generation that keeps streaming is never cut (the gateway caps a stream
    itself), a silent upstream is."""
    return (
        settings.BUDDY_UPSTREAM_CONNECT_TIMEOUT_SECONDS,
        settings.BUDDY_UPSTREAM_READ_TIMEOUT_SECONDS,
    )


@per_settings
def _headers() -> tuple[tuple[str, str], ...]:
    return _headers_of(settings.BUDDY_UPSTREAM_API_KEY)


@functools.cache
def _headers_of(api_key: str) -> tuple[tuple[str, str], ...]:
    # What goes upstream: the body as given (never compressed either way), buddy's credential
    # when set; nothing of the client's request.
    headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Accept-Encoding", "identity"),
    ]
    if api_key:
        headers.append(("Authorization", f"Bearer {api_key}"))
    return tuple(headers)


def chat_completions_url(endpoint_url: str) -> str:
    return f"{endpoint_url.rstrip('/')}/v1/chat/completions"


def transport_failure(exc: BaseException) -> UpstreamFailure:
    """What the gateway answers when talking to the upstream failed (no answer, or cut short)."""
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(errors.UPSTREAM_TIMEOUT.message, entry=errors.UPSTREAM_TIMEOUT)
    return UpstreamFailure(f"The model server could not be reached ({type(exc).__name__}).")


def _upstream_message(content: bytes) -> str | None:
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = content.decode("utf-8", "replace").strip()
        return text[:_MESSAGE_LIMIT] or None
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or body.get("message") or body.get("detail")
    return str(message)[:_MESSAGE_LIMIT] if message else None


def status_failure(response: Response, content: bytes) -> UpstreamFailure:
    """What the gateway answers for an upstream's non-2xx answer."""
    status = response.status
    relayed = _RELAYED_STATUSES.get(status)
    if relayed is None:
        # Auth, routing or server trouble upstream is buddy's problem, not the client's request.
        return UpstreamFailure(f"The model server failed (HTTP {status}).")
    message = _upstream_message(content) or f"The model server refused the request (HTTP {status})."
    if relayed == 429:
        return UpstreamFailure(
            message,
            entry=errors.UPSTREAM_RATE_LIMITED,
            retry_after=response.headers.get("Retry-After"),
        )
    return UpstreamFailure(message, entry=errors.UPSTREAM_REJECTED)


async def _post(endpoint_url: str, body: dict[str, Any]) -> Response:
    connect, read = _timeouts()
    try:
        target = client.target(chat_completions_url(endpoint_url), _headers())
    except ValueError as exc:
        raise UpstreamFailure("The model server's address cannot be called.") from exc
    try:
        return await client.pool(_KEEPALIVE_SECONDS).post(
            target, json.dumps(body).encode(), connect_timeout=connect, read_timeout=read
        )
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(exc) from exc


async def _refusal(response: Response) -> UpstreamFailure:
    """The failure for a non-2xx answer, from at most `_ERROR_BODY_LIMIT` bytes of its body."""
    try:
        content = await response.read(_ERROR_BODY_LIMIT)
    except TRANSPORT_ERRORS:
        content = b""  # the status alone decides the answer
    finally:
        response.close()
    return status_failure(response, content)


async def chat_completion(
    *, endpoint_url: str, body: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """A non-streamed completion: the upstream's JSON answer, verbatim, and parsed (for its
    `usage`)."""
    response = await _post(endpoint_url, body)
    if not 200 <= response.status < 300:
        raise await _refusal(response)
    try:
        content = await response.read()
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(exc) from exc
    finally:
        response.close()
    try:
        answer = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise UpstreamFailure("The model server answered with something other than JSON.")
    return content, answer


async def open_chat_stream(*, endpoint_url: str, body: dict[str, Any]) -> Response:
    """Start a streamed completion; the caller relays `iter_any()` and must `close()` it.

    Returns once the upstream has answered with a success status, so that a refusal or an
    unreachable upstream still gets a proper error status instead of a broken stream.
    """
    response = await _post(endpoint_url, body)
    if 200 <= response.status < 300:
        return response
    raise await _refusal(response)
