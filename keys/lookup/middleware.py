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

from collections.abc import Callable, Iterable
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
from buddy.http.request_id import begin_request, end_request, unbind_request_id
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
    the script prefix and URLconf set and reset, the middleware chain. Here the lookup gets what
    the middleware before the shortcut gives it, through the same functions: its request id and
    access line (`begin_request`, `end_request`), an exception's answer as Django's handler would
    make it (`response_for_exception`) in the contract's error body (`json_error_of`), and
    Django's warning for an error answer not yet logged (`log_response`, here while the request
    id is still bound, so that line carries it too). Of the signals' receivers only
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
        request = self.request_class(environ)
        request_id, token, started = begin_request(request)
        try:
            try:
                response = apis.lookup(request)
            except Exception as exc:
                response = json_error_of(request, response_for_exception(request, exc))
            end_request(request, response, request_id, started)
            if response.status_code >= 400:
                log_response(
                    "%s: %s",
                    response.reason_phrase,
                    request.path,
                    response=response,
                    request=request,
                )
        finally:
            unbind_request_id(token)
            request.close()
            if self.close_connections:
                close_old_connections()
        start_response(f"{response.status_code} {response.reason_phrase}", [*response.items()])
        return [response.content]


def _takes_front(environ: dict[str, Any]) -> bool:
    """Whether a request of the lookup path is an ordinary one (`ProxyLookupFront`)."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("SCRIPT_NAME"):
        return False
    if tuple([environ.get(name) for name in _HOST_META]) not in _accepted_hosts:
        return False
    length = declared_length(environ.get("CONTENT_LENGTH"))
    return length is None or length <= max_body_bytes(LOOKUP_PATH)
