"""A base for middleware that works in both of Django's modes. It imports nothing of the apps, so
the logging configuration (which loads the request-id middleware's module) can import it early."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


class DualModeMiddleware:
    """Base of buddy's middleware: usable in sync (WSGI) and async (ASGI) mode alike.

    Under ASGI a sync-only middleware makes Django run the whole request, the gateway's async
    views included, on a thread held for as long as the view waits. Subclasses implement
    `__call__` for sync mode and return `self._acall(request)` from it when `self.is_async`.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)  # type: ignore[type-var]  # an async-callable instance
