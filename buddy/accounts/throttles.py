"""Throttles of the console API."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class TokenFailureThrottle(SimpleRateThrottle):
    """Failed `POST /api/v1/auth/token` attempts per client address (brute force).

    Only failures count, so a console that signs in often is never slowed down; once a client
    address reaches the rate, every attempt from it answers `429 rate_limited` with Retry-After
    until the oldest failure leaves the window.
    """

    scope = "console_token_failures"

    # Set by SimpleRateThrottle.__init__ from the rate (the stubs do not declare them).
    num_requests: int
    duration: int

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            return self.throttle_failure()
        return True  # a request is recorded only if it fails: see record_failure

    def record_failure(self, request: Request, view: Any) -> None:
        if self.rate is None:
            return
        self.allow_request(request, view)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)
