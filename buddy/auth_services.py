"""Console tokens: issued for a username and password, stored only as knox's digest."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.http import HttpRequest
from knox.models import AuthToken

from buddy.errors import InvalidCredentials


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
