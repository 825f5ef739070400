"""A request id on every request and on every log line written while serving it.

An incoming `X-Request-ID` (from the edge proxy or a load balancer) is kept when it is well formed,
so one id follows a request across services; otherwise a new one is made. Either way it is echoed
in the response's `X-Request-ID` and put on every log record by `buddy.ops.logging.RequestIdFilter`.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from contextvars import ContextVar, Token
from typing import Any

from django.http import HttpRequest, HttpResponse

from buddy.http.dual_mode import DualModeMiddleware

HEADER = "X-Request-ID"
_META_NAME = "HTTP_X_REQUEST_ID"
# Letters, digits and a few separators, at most 128 characters: anything else (a header
# stuffed with newlines, JSON or a megabyte of text) is replaced, never logged.
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}", re.ASCII)
# Probes hit these every few seconds, and the proxy's lookup thousands of times a second (it is
# counted and timed in /metrics instead): their lines would drown the rest at INFO.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/internal/v1/auth/lookup"})

_random = random.Random()
# A forked worker must not repeat its parent's (or a sibling's) ids.
os.register_at_fork(after_in_child=_random.seed)
_current: ContextVar[str] = ContextVar("buddy_request_id", default="-")
access_logger = logging.getLogger("buddy.access")


def current_request_id() -> str:
    """The id of the request being served in this context, `-` outside any request."""
    return _current.get()


def request_id_from(candidate: object) -> str:
    """The incoming id if it is well formed, otherwise a fresh one."""
    if isinstance(candidate, str) and _WELL_FORMED.fullmatch(candidate):
        return candidate
    # 128 random bits as 32 hex digits, like a uuid4's hex but without a system call per request:
    # an id names a request, it guards nothing.
    return f"{_random.getrandbits(128):032x}"


def bind_request_id(candidate: object) -> tuple[str, Token[str]]:
    """Make the request id (`request_id_from(candidate)`) the current one; `unbind_request_id`
    with the token when the request is done. For servers that are not Django middleware (the
    gateway's ASGI app)."""
    request_id = request_id_from(candidate)
    return request_id, _current.set(request_id)


def unbind_request_id(token: Token[str]) -> None:
    _current.reset(token)


def log_access(method: str, path: str, status: int, started: float) -> None:
    """The request's access line (`buddy.access`): method, path (never the query), status and
    duration since `started` (a `time.perf_counter()`).

    Every request of the hot paths writes one, so it does not go through a `LogRecord`: each
    handler of `buddy.access` (its own, then its ancestors' while they propagate) whose level lets
    the line through, whose filters are buddy's own (request id, redaction) and whose formatter
    renders access lines (`access_line`: buddy's JSON and text formatters) gets the finished line
    in one write; any other handler (a test's capture, a custom formatter or filter) gets the
    usual record, as `Logger.log` would make it. The same line either way, the same levels, the
    same `LOG_FORMAT`; the fields that carry client input (method, path, request id) are redacted
    by the formatter, the rest are the server's own.
    """
    level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
    logger = access_logger
    if not logger.isEnabledFor(level) or logger.disabled:
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    if logger.filters:  # a filter on the logger itself sees every record: the usual way
        _log_access_record(level, method, path, status, duration_ms)
        return
    created = time.time()
    request_id = _current.get()
    record: logging.LogRecord | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if level < handler.level:
                continue
            line = None
            if type(handler) is logging.StreamHandler and all(
                getattr(f, "covers_access_line", False) for f in handler.filters
            ):
                render = getattr(handler.formatter, "access_line", None)
                if render is not None:
                    line = render(level, request_id, method, path, status, duration_ms, created)
            if line is not None and isinstance(handler, logging.StreamHandler):
                handler.acquire()
                try:
                    stream = handler.stream
                    stream.write(line + handler.terminator)
                    stream.flush()
                except Exception:
                    handler.handleError(_access_record(level, method, path, status, duration_ms))
                finally:
                    handler.release()
            else:
                if record is None:
                    record = _access_record(level, method, path, status, duration_ms)
                handler.handle(record)
        current = current.parent if current.propagate else None


def _access_extra(method: str, path: str, status: int, duration_ms: float) -> dict[str, Any]:
    return {"method": method, "path": path, "status": status, "duration_ms": duration_ms}


def _access_record(
    level: int, method: str, path: str, status: int, duration_ms: float
) -> logging.LogRecord:
    return access_logger.makeRecord(
        access_logger.name,
        level,
        __file__,
        0,
        "%s %s %s",
        (method, path, status),
        None,
        extra=_access_extra(method, path, status, duration_ms),
    )


def _log_access_record(level: int, method: str, path: str, status: int, duration_ms: float) -> None:
    access_logger.log(
        level,
        "%s %s %s",
        method,
        path,
        status,
        extra=_access_extra(method, path, status, duration_ms),
    )


class RequestIdMiddleware(DualModeMiddleware):
    """Binds the request id for the request's duration and writes one access line per request."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        request_id, token, started = begin_request(request)
        try:
            return end_request(request, self.get_response(request), request_id, started)
        finally:
            _current.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request_id, token, started = begin_request(request)
        try:
            return end_request(request, await self.get_response(request), request_id, started)
        finally:
            _current.reset(token)


def begin_request(request: HttpRequest) -> tuple[str, Token[str], float]:
    """What `RequestIdMiddleware` does before the rest of the request: bind its id (also
    `request.request_id`). Returns the id, the token for `unbind_request_id` and the start time."""
    # META, not `request.headers`: that builds a dict of every header (the proxy's lookup
    # paid ~10 us for it per request).
    request_id = request_id_from(request.META.get(_META_NAME))
    request.request_id = request_id  # type: ignore[attr-defined]
    return request_id, _current.set(request_id), time.perf_counter()


def end_request(
    request: HttpRequest, response: HttpResponse, request_id: str, started: float
) -> HttpResponse:
    """What `RequestIdMiddleware` does with the answer: the `X-Request-ID` header and the access
    line."""
    response[HEADER] = request_id
    # The path only: a query string is the client's and may carry anything.
    log_access(str(request.method), request.path, response.status_code, started)
    return response
