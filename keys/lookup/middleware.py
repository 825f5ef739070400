"""The proxy lookup's short ways through Django.

`POST /internal/v1/auth/lookup` is served thousands of times a second to one machine client that
authenticates by service token: the browser-oriented middleware (sessions, CSRF, users, messages,
clickjacking headers, URL resolution) has nothing to do for it, yet costs about as much CPU as the
lookup itself. Two ways past it, both answering with the same view the URL route serves
(`keys.lookup.apis.AuthLookupApi`), so all give identical answers:

- `ProxyLookupShortcutMiddleware`, in `MIDDLEWARE` after the request id, error shaping and body
  limit: the way in every mode (ASGI, the test client) and for every request of that path;
- `ProxyLookupFront`, in front of Django's WSGI handler (`buddy.wsgi`, gunicorn): the way of the
  ordinary lookup (below), which then also skips the handler's own per-request work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from http.client import responses
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import setting_changed
from django.db import close_old_connections
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils.log import log_response

from buddy.http.body_limit import declared_length, max_body_bytes
from buddy.http.dual_mode import DualModeMiddleware
from buddy.http.middleware import json_error_of
from buddy.http.request_id import HEADER as REQUEST_ID_HEADER
from buddy.http.request_id import bind_request_id, log_access, unbind_request_id
from keys.lookup import apis

LOOKUP_PATH = "/internal/v1/auth/lookup"

# What `request.get_host()` depends on, for the requests it accepted: the proxy sends the same
# Host on every call, and validating it against ALLOWED_HOSTS each time cost more than the rest
# of the middleware. Bounded; emptied when those settings change (tests).
_HOST_META = ("HTTP_X_FORWARDED_HOST", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT")
_accepted_hosts: set[tuple[str | None, ...]] = set()


@receiver(setting_changed)
def _forget_hosts(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ALLOWED_HOSTS", "USE_X_FORWARDED_HOST", "USE_X_FORWARDED_PORT", "DEBUG"}:
        _accepted_hosts.clear()


def _check_host(request: HttpRequest) -> None:
    """ALLOWED_HOSTS is still enforced (CommonMiddleware would): `DisallowedHost`, a 400."""
    meta = request.META
    seen = tuple([meta.get(name) for name in _HOST_META])
    if seen not in _accepted_hosts:
        request.get_host()
        if len(_accepted_hosts) < 256:
            _accepted_hosts.add(seen)


class ProxyLookupShortcutMiddleware(DualModeMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        if request.path_info == LOOKUP_PATH:
            _check_host(request)
            return apis.dispatch_lookup(request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == LOOKUP_PATH:
            _check_host(request)
            return await sync_to_async(apis.dispatch_lookup)(request)
        return await self.get_response(request)


StartResponse = Callable[..., Any]


class ProxyLookupFront:
    """A WSGI application in front of Django's (`buddy.wsgi`) that serves the ordinary lookup
    itself: `POST` to the lookup path with no script prefix, a Host this process has already
    accepted (`_accepted_hosts`) and a declared body within the path's limit. Any other request,
    the lookup path's unusual ones included (another method, a Host not yet judged or refused, a
    body too large), goes to Django whole and is answered there as before.

    Django's handler around the shortcut cost about 30 % of a cached lookup's CPU (in-process,
    ~35 of ~120 us): the `request_started` and `request_finished` signals and their receivers,
    the script prefix and URLconf set and reset, the middleware chain; making the `HttpRequest`
    and the `HttpResponse` cost a few more. Here the endpoint's answer (`apis.lookup_answer`,
    which the view renders as an `HttpResponse`) is written out directly, with what the
    middleware before the shortcut gives a lookup: its request id (`bind_request_id`, the
    `X-Request-ID` header) and access line (`log_access`), and for an exception the answer
    Django's handler makes (`response_for_exception`) in the contract's error body
    (`json_error_of`), with Django's warning for it (`log_response`, here while the request id is
    still bound, so that line carries it too). Of the signals' receivers only
    `close_old_connections` has work for a lookup (one that read PostgreSQL): it runs after every
    answer, so a connection that broke or outlived `CONN_MAX_AGE` is closed before the next
    request of the process, and the next query health-checks it (`CONN_HEALTH_CHECKS`), as the
    next request's `request_started` would have. (`reset_queries`, `close_caches` and
    `reset_urlconf` have nothing to do: a lookup uses no Django cache and sets no URLconf.)

    `close_connections=False` is for tests inside a transaction, whose connection a request must
    not close (Django's test client disconnects `close_old_connections` the same way).
    """

    def __init__(self, django: WSGIHandler, *, close_connections: bool = True) -> None:
        self.django = django
        self.request_class = django.request_class
        self.close_connections = close_connections

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != LOOKUP_PATH or not _takes_front(environ):
            return self.django(environ, start_response)
        request_id, token = bind_request_id(environ.get("HTTP_X_REQUEST_ID"))
        started = time.perf_counter()
        try:
            try:
                answer = apis.lookup_answer(
                    authorization=environ.get("HTTP_AUTHORIZATION"),
                    read_body=lambda: _body(environ),
                )
            except Exception as exc:
                # What Django's stack answers for an exception in the shortcut: its handler's
                # response (logged with the traceback) in the contract's error body.
                request = self.request_class(environ)
                request.request_id = request_id  # type: ignore[attr-defined]
                failed = json_error_of(request, response_for_exception(request, exc))
                status, body = failed.status_code, failed.content
                headers = [*failed.items(), (REQUEST_ID_HEADER, request_id)]
                log_access("POST", LOOKUP_PATH, status, started)
                log_response(
                    "%s: %s", failed.reason_phrase, LOOKUP_PATH, response=failed, request=request
                )
            else:
                status, body = answer.status, answer.body
                headers = [_JSON, *answer.headers, (REQUEST_ID_HEADER, request_id)]
                log_access("POST", LOOKUP_PATH, status, started)
        finally:
            unbind_request_id(token)
            if self.close_connections:
                close_old_connections()
        start_response(f"{status} {responses.get(status, 'Unknown Status Code')}", headers)
        return [body]


_JSON = ("Content-Type", "application/json")


def _body(environ: dict[str, Any]) -> bytes:
    """The request body as Django's `request.body` reads it (the declared length, or nothing)."""
    length = declared_length(environ.get("CONTENT_LENGTH"))
    return environ["wsgi.input"].read(length) if length else b""


def _takes_front(environ: dict[str, Any]) -> bool:
    """Whether a request of the lookup path is an ordinary one (`ProxyLookupFront`)."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("SCRIPT_NAME"):
        return False
    if tuple([environ.get(name) for name in _HOST_META]) not in _accepted_hosts:
        return False
    length = declared_length(environ.get("CONTENT_LENGTH"))
    return length is None or length <= max_body_bytes(LOOKUP_PATH)
