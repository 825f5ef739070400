from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import Http404, HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

from buddy.core import errors
from buddy.http.dual_mode import DualModeMiddleware
from buddy.http.errors import error_response

logger = logging.getLogger("buddy.core.errors")

# Pages that are HTML by design (the operators' admin, the browsable schema, the console).
_HTML_PREFIXES = ("/admin/", "/api/docs", "/console/")


class JsonErrorsMiddleware(DualModeMiddleware):
    """Any error answer that is not already JSON becomes the contract's error body.

    Django renders its own HTML (with DEBUG=true, technical pages with stack traces) for errors
    that happen outside a DRF view: unknown URLs, exceptions in middleware. None of that may reach
    a client of the API.

    It works in both modes (see DualModeMiddleware).
    """

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        return json_error_of(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return json_error_of(request, await self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path.startswith(_HTML_PREFIXES):
            return None
        if isinstance(exception, Http404):
            return error_response(errors.NOT_FOUND)
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(errors.SERVER_ERROR)


def json_error_of(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """`response`, or the contract's error body in its place when it is an error that is not
    already JSON (outside the HTML pages): what `JsonErrorsMiddleware` makes of every answer."""
    if (
        response.status_code >= 400
        and not request.path.startswith(_HTML_PREFIXES)
        and "json" not in response.get("Content-Type", "")
    ):
        entry = errors.entry_of_status(response.status_code, response.reason_phrase)
        # Keep what tells the client how to proceed (405's Allow, 429's Retry-After).
        kept = {
            name: response[name]
            for name in ("Allow", "Retry-After", "WWW-Authenticate")
            if response.has_header(name)
        }
        return error_response(entry, headers=kept)
    return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise's middleware (the admin's CSS and JS from gunicorn or uvicorn), usable in async
    mode too: whitenoise's own is sync-only, and under ASGI it would make every request (the
    gateway's long waits included) hold a thread. Only a static file is served from a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any], *args: Any, **kwargs: Any):
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
