"""Console tokens (issued for a username and password, stored only as knox's digest) and
service tokens (the proxy's and the provisioner's, stored only as a SHA-256 digest)."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, logout
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken

from buddy.accounts.models import ServiceRole, ServiceToken
from buddy.core.errors import InvalidCredentials, ValidationFailed
from buddy.core.validation import validate_name


def console_token_create(*, request: HttpRequest, username: str, password: str) -> str:
    """A new console token (`ob_con_...`) for the user these credentials name; returned once,
    kept hashed.

    Wrong credentials and inactive users are the same `InvalidCredentials` (Django's backend
    runs the password hasher for unknown users too, so timing does not tell them apart).
    """
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise InvalidCredentials()
    return console_token_issue(user=user)


def console_token_issue(*, user: AbstractBaseUser) -> str:
    """A new console token for `user`, keeping at most `BUDDY_CONSOLE_TOKENS_PER_USER` live.

    At the cap the oldest live tokens are revoked to make room (a sign-in always succeeds: a
    user who lost a browser's token must not be locked out until it expires, and whoever holds
    the password could sign out everywhere anyway). Expired tokens are deleted on the way. The
    user's row is locked, so concurrent sign-ins cannot both see room for one more.
    """
    cap = settings.BUDDY_CONSOLE_TOKENS_PER_USER
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        now = timezone.now()
        tokens = AuthToken.objects.filter(user=user)
        tokens.filter(expiry__lte=now).delete()
        live = tokens.filter(Q(expiry__isnull=True) | Q(expiry__gt=now))
        surplus = list(live.order_by("-created").values_list("digest", flat=True)[cap - 1 :])
        if surplus:
            AuthToken.objects.filter(digest__in=surplus).delete()
        _instance, token = AuthToken.objects.create(user=user)
    return token


def console_sign_out(*, request: HttpRequest, token: object) -> None:
    """Ends what made the call: its console token (revoked), or else its session."""
    if isinstance(token, AuthToken):
        AuthToken.objects.filter(digest=token.digest).delete()
    else:
        logout(request)


def console_sign_out_everywhere(*, request: HttpRequest, user: AbstractBaseUser) -> int:
    """Revokes every console token of `user` (and ends the calling session, if that is how it
    called); returns how many tokens were revoked."""
    revoked, _per_model = AuthToken.objects.filter(user=user).delete()
    if request.session.get("_auth_user_id") is not None:
        logout(request)
    return revoked


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
