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
from django.http import HttpRequest, HttpResponse

from buddy.http.dual_mode import DualModeMiddleware
from keys.lookup import apis

LOOKUP_PATH = "/internal/v1/auth/lookup"


class ProxyLookupShortcutMiddleware(DualModeMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        if request.path_info == LOOKUP_PATH:
            request.get_host()  # ALLOWED_HOSTS is still enforced (CommonMiddleware would)
            return apis.dispatch_lookup(request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == LOOKUP_PATH:
            request.get_host()
            return await sync_to_async(apis.dispatch_lookup)(request)
        return await self.get_response(request)
