"""The proxy lookup's short way through the middleware stack.

`POST /internal/v1/auth/lookup` is served thousands of times a second to one machine client that
authenticates by service token: the browser-oriented middleware after this one (sessions, CSRF,
users, messages, clickjacking headers, URL resolution) has nothing to do for it, yet costs about as
much CPU as the lookup itself. This middleware answers that one path directly with the same view
the URL route serves (`keys.lookup.apis.AuthLookupApi`), so both give identical answers; every
middleware placed before it (error shaping, request ids, metrics) still runs.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from buddy.http.dual_mode import DualModeMiddleware
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
