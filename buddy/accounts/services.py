"""Console tokens (issued for a username and password, stored only as knox's digest) and
service tokens (the proxy's and the provisioner's, stored only as a SHA-256 digest)."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import authenticate
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken

from buddy.accounts.models import ServiceRole, ServiceToken
from buddy.core.errors import InvalidCredentials, ValidationFailed
from buddy.core.validation import validate_name


def console_token_create(*, request: HttpRequest, username: str, password: str) -> str:
    """A new console token for the user these credentials name; returned once, kept hashed.

    Wrong credentials and inactive users are the same `InvalidCredentials` (Django's backend
    runs the password hasher for unknown users too, so timing does not tell them apart).
    """
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise InvalidCredentials()
    _instance, token = AuthToken.objects.create(user=user)
    return token


# --- service tokens ----------------------------------------------------------------------------

SERVICE_TOKEN_PREFIX = "ob_svc_"  # noqa: S105 - a prefix, not a secret


def service_token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def service_token_create(*, name: str, role: str) -> tuple[ServiceToken, str]:
    """A new service token; its secret is returned once and only its SHA-256 digest is kept."""
    name = validate_name(name)
    if role not in ServiceRole.values:
        raise ValidationFailed(fields={"role": [f"One of: {', '.join(ServiceRole.values)}."]})
    secret = SERVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ServiceToken.objects.create(name=name, role=role, digest=service_token_digest(secret))
    return token, secret


def service_token_revoke(*, token_id: int) -> ServiceToken:
    token = ServiceToken.objects.get(pk=token_id)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
