"""The admin sign-in lockout (django-axes): per username and per client address, each with a
limit of its own, checked before any password is hashed.

axes keeps the failed attempts in the database (`axes.AccessAttempt`, one row per username,
address and user agent, visible in the admin) and refuses a locked-out sign-in in its
authentication backend, which runs before Django's `ModelBackend` and so before argon2. Only the
admin site is covered: the console's token endpoint has its own throttle
(`buddy.accounts.throttles`). An operator unlocks with `manage.py axes_reset_username <name>`,
`axes_reset_ip <address>`, or `axes_reset` (everyone), or by deleting the attempts in the admin.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str:
    """The client's address as the console throttle sees it: `REMOTE_ADDR`, or with
    `BUDDY_NUM_PROXIES` > 0 the address that many proxies back in `X-Forwarded-For`."""
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # reads request.META only


class AdminLoginLockoutHandler(AxesDatabaseHandler):
    """axes' database handler with one limit per lockout parameter.

    axes compares the largest failure count of its parameters with one limit; here a username
    locks at `BUDDY_ADMIN_LOGIN_FAILURES_PER_USERNAME` failures (from any address) and an address
    at `BUDDY_ADMIN_LOGIN_FAILURES_PER_ADDRESS` (for any username), so that operators behind one
    address do not lock each other out at a single user's limit. `get_failures` therefore answers
    1 (some limit reached) or 0 against `AXES_FAILURE_LIMIT = 1`.
    """

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        limits = (
            settings.BUDDY_ADMIN_LOGIN_FAILURES_PER_USERNAME,
            settings.BUDDY_ADMIN_LOGIN_FAILURES_PER_ADDRESS,
        )
        # One queryset per entry of AXES_LOCKOUT_PARAMETERS (["username", "ip_address"]), each
        # already limited to the cool-off period.
        attempts = self.get_user_attempts(request, credentials)
        for queryset, limit in zip(attempts, limits, strict=True):
            failures = queryset.aggregate(n=Sum("failures_since_start"))["n"] or 0
            if failures >= limit:
                return 1
        return 0

    def user_login_failed(
        self,
        sender: Any,
        credentials: dict[str, Any],
        request: HttpRequest | None = None,
        **kwargs: Any,
    ) -> None:
        # Only the admin's failures are the admin's to count (AXES_ONLY_ADMIN_SITE limits the
        # check, not the recording); the console's are counted by its own throttle.
        if request is None or not self.is_admin_request(request):
            return
        super().user_login_failed(sender, credentials, request, **kwargs)
