import hashlib
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.console import assert_error
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
URL = "/api/v1/auth/token"


def post(client, body):
    return client.post(URL, body, format="json")


def test_valid_credentials_get_a_token_that_authenticates(user):
    client = APIClient()
    response = post(client, {"username": user.username, "password": PASSWORD})
    assert response.status_code == 201
    assert set(response.json()) == {"token"}
    assert response["Cache-Control"] == "no-store"
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/deployments").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"token {token}")  # the scheme is case-insensitive
    assert client.get("/api/v1/deployments").status_code == 200


def test_tokens_are_stored_only_as_digests(user):
    token = post(APIClient(), {"username": user.username, "password": PASSWORD}).json()["token"]
    stored = AuthToken.objects.get(user=user)
    assert stored.digest != token and token not in stored.digest
    assert stored.digest == hashlib.sha512(token.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(t)::text FROM knox_authtoken t")
        rows = [row[0] for row in cursor.fetchall()]
    assert rows and all(token not in row for row in rows)


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "user-that-does-not-exist", "password": PASSWORD},
        {"username": "__USER__", "password": "wrong password"},
        {"username": "__USER__", "password": PASSWORD.upper()},
        {"username": "__USER__", "password": ""},
    ],
)
def test_wrong_credentials_are_401_invalid_credentials(user, credentials):
    if credentials["username"] == "__USER__":
        credentials = {**credentials, "username": user.username}
    response = post(APIClient(), credentials)
    if credentials["password"] == "":
        assert_error(response, 400, "validation_error")
    else:
        error = assert_error(response, 401, "invalid_credentials")
        assert error["type"] == "authentication_error"
    assert not AuthToken.objects.exists()


def test_an_inactive_user_gets_no_token():
    user = UserFactory(is_active=False)
    response = post(APIClient(), {"username": user.username, "password": PASSWORD})
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "x"}, {"password": "x"}, {"username": 1, "password": 2}, ["x", "y"], "x"],
)
def test_a_malformed_body_is_400_validation_error(body):
    assert_error(post(APIClient(), body), 400, "validation_error")


def test_a_body_that_is_not_json_is_400_invalid_json():
    response = APIClient().generic(
        "POST", URL, b"username=a&password=b", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 400, "invalid_json")


def test_a_session_without_csrf_does_not_block_the_token_endpoint(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert post(client, {"username": user.username, "password": PASSWORD}).status_code == 201


def test_repeated_failures_are_throttled_with_retry_after(user):
    client = APIClient()
    wrong = {"username": user.username, "password": "guess"}
    for _ in range(10):
        assert_error(post(client, wrong), 401, "invalid_credentials")
    throttled = post(client, wrong)
    error = assert_error(throttled, 429, "rate_limited")
    assert error["type"] == "rate_limit_error"
    assert 1 <= int(throttled["Retry-After"]) <= 60
    # While throttled even the right password waits (a guess must not be confirmed).
    right = {"username": user.username, "password": PASSWORD}
    assert_error(post(client, right), 429, "rate_limited")
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert post(client, right).status_code == 201


def test_successful_sign_ins_are_not_throttled(user):
    client = APIClient()
    for _ in range(15):
        assert post(client, {"username": user.username, "password": PASSWORD}).status_code == 201


def test_a_forged_forwarded_for_header_does_not_escape_the_throttle(user):
    wrong = {"username": user.username, "password": "guess"}
    for i in range(10):
        post(APIClient(HTTP_X_FORWARDED_FOR=f"10.0.0.{i}"), wrong)
    assert_error(post(APIClient(HTTP_X_FORWARDED_FOR="10.9.9.9"), wrong), 429, "rate_limited")
