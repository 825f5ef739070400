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
    duration since `started` (a `time.perf_counter()`)."""
    access_logger.log(
        logging.DEBUG if path in _QUIET_PATHS else logging.INFO,
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )


class RequestIdMiddleware(DualModeMiddleware):
    """Binds the request id for the request's duration and writes one access line per request."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        request_id, token, started = self._begin(request)
        try:
            return self._end(request, self.get_response(request), request_id, started)
        finally:
            _current.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request_id, token, started = self._begin(request)
        try:
            return self._end(request, await self.get_response(request), request_id, started)
        finally:
            _current.reset(token)

    @staticmethod
    def _begin(request: HttpRequest) -> tuple[str, Token[str], float]:
        request_id = request_id_from(request.headers.get(HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id, _current.set(request_id), time.perf_counter()

    @staticmethod
    def _end(
        request: HttpRequest, response: HttpResponse, request_id: str, started: float
    ) -> HttpResponse:
        response[HEADER] = request_id
        # The path only: a query string is the client's and may carry anything.
        log_access(str(request.method), request.path, response.status_code, started)
        return response
