"""Helpers of the console API tests: signed-in clients and the contract's error body."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from knox.models import AuthToken
from rest_framework.test import APIClient

ERROR_TYPES = {"invalid_request_error", "authentication_error", "rate_limit_error", "server_error"}


def token_client(user: AbstractBaseUser) -> APIClient:
    """A client that authenticates as `user` with a console token, as the frontend does."""
    _instance, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error body with this status and code; returns `error`."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert (
        {"message", "type", "code", "param"}
        <= set(error)
        <= {
            "message",
            "type",
            "code",
            "param",
            "fields",
        }
    )
    assert error["code"] == code, error
    assert error["type"] in ERROR_TYPES
    assert isinstance(error["message"], str) and error["message"]
    if code == "validation_error":
        assert isinstance(error["fields"], dict) and error["fields"]
    return error
