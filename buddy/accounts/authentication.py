"""Authentication of machine clients (the proxy, the provisioner) by service token."""

from __future__ import annotations

from typing import NoReturn

from django.utils.functional import cached_property
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from buddy.accounts.models import ServiceRole
from buddy.accounts.selectors import service_token_authenticate
from buddy.core import errors


class ServicePrincipal:
    """The authenticated machine client; `request.user` of internal endpoints."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, token_id: int, name: str, role: str) -> None:
        self.token_id = token_id
        self.name = name
        self.role = role

    @cached_property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"

    def __str__(self) -> str:
        return self.actor


class ServiceTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <service token>`; anything missing or wrong is simply not
    authenticated, and the role permission answers `403 service_auth_failed`."""

    def authenticate(self, request: Request) -> tuple[ServicePrincipal, None] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        token = service_token_authenticate(authorization=header)
        if token is None:
            return None
        return ServicePrincipal(token.id, token.name, token.role), None

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class _HasRole(BasePermission):
    role: str = ""

    def has_permission(self, request: Request, view: object) -> bool:
        user = request.user
        return isinstance(user, ServicePrincipal) and user.role == self.role


class IsProxy(_HasRole):
    role = ServiceRole.PROXY


class IsProvisioner(_HasRole):
    role = ServiceRole.PROVISIONER


class ServiceAuthFailed(APIException):
    status_code = errors.SERVICE_AUTH_FAILED.status
    default_code = errors.SERVICE_AUTH_FAILED.code
    default_detail = errors.SERVICE_AUTH_FAILED.message


class InternalApiView(APIView):
    """Base of the `/internal/v1/` endpoints: service tokens only, no session, no CSRF.

    Subclasses set `permission_classes = [IsProxy]` or `[IsProvisioner]`. Anything that is not a
    valid token of that role answers `403 service_auth_failed` (never 401: the caller is a machine
    whose configuration is wrong, not a user to be asked for credentials).
    """

    authentication_classes = [ServiceTokenAuthentication]
    throttle_classes: list[type] = []

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> NoReturn:
        raise ServiceAuthFailed()
