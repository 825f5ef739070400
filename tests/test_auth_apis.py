import hashlib
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.console import assert_error
from tests.factories import UserFactory
from tests.harness.threads import run_concurrently

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
URL = "/api/v1/auth/token"


@pytest.fixture(autouse=True)
def _at_the_start_of_a_throttle_window():
    """The sign-in throttle counts in fixed windows (a minute, an hour): each test runs at the
    start of one, time stopped, so that no window ends half-way through its attempts."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=1, seconds=1
    )
    with time_machine.travel(start, tick=False):
        yield


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
    assert 1 <= int(throttled["Retry-After"]) <= 3600
    # While throttled even the right password waits (a guess must not be confirmed).
    right = {"username": user.username, "password": PASSWORD}
    assert_error(post(client, right), 429, "rate_limited")
    with time_machine.travel(timezone.now() + timedelta(seconds=3601)):
        assert post(client, right).status_code == 201


def test_successful_sign_ins_are_not_throttled(user):
    client = APIClient()
    for _ in range(15):
        assert post(client, {"username": user.username, "password": PASSWORD}).status_code == 201


def test_a_forged_forwarded_for_header_does_not_escape_the_throttle():
    # Another username each time: only the address is counted, and the header changes nothing.
    for i in range(30):
        wrong = {"username": f"nobody-{i}", "password": "guess"}
        assert post(APIClient(HTTP_X_FORWARDED_FOR=f"10.0.0.{i}"), wrong).status_code == 401
    wrong = {"username": "nobody-else", "password": "guess"}
    assert_error(post(APIClient(HTTP_X_FORWARDED_FOR="10.9.9.9"), wrong), 429, "rate_limited")


# --- per username and per address (issue 13, item 7) ----------------------------------------------


def _from(address: str) -> APIClient:
    return APIClient(REMOTE_ADDR=address)


def test_the_nth_failure_for_a_user_locks_that_user_from_any_address(user, other_user):
    wrong = {"username": user.username, "password": "guess"}
    for i in range(10):  # each guess from another address
        assert_error(post(_from(f"192.0.2.{i}"), wrong), 401, "invalid_credentials")
    right = {"username": user.username, "password": PASSWORD}
    throttled = post(_from("198.51.100.7"), right)  # an address that never failed
    assert_error(throttled, 429, "rate_limited")
    assert 1 <= int(throttled["Retry-After"]) <= 3600
    # Another user is not locked, from the same addresses.
    assert (
        post(
            _from("192.0.2.0"), {"username": other_user.username, "password": PASSWORD}
        ).status_code
        == 201
    )


def test_another_user_from_the_same_address_signs_in_until_the_address_limit(user, other_user):
    address = "203.0.113.5"
    right = {"username": other_user.username, "password": PASSWORD}
    for _ in range(10):  # `user` is now locked; the address has 10 failures of its 30
        assert_error(
            post(_from(address), {"username": user.username, "password": "x"}),
            401,
            "invalid_credentials",
        )
    assert post(_from(address), right).status_code == 201
    for i in range(20):  # guesses at other usernames, up to the address's limit
        assert_error(
            post(_from(address), {"username": f"u{i}", "password": "x"}), 401, "invalid_credentials"
        )
    assert_error(post(_from(address), right), 429, "rate_limited")
    assert post(_from("203.0.113.6"), right).status_code == 201  # from elsewhere it still works


def test_a_throttled_attempt_never_reaches_the_password_hasher(user, monkeypatch):
    for _ in range(10):
        post(APIClient(), {"username": user.username, "password": "guess"})
    calls = []
    original = ModelBackend.authenticate
    monkeypatch.setattr(
        ModelBackend, "authenticate", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    right = {"username": user.username, "password": PASSWORD}
    assert_error(post(APIClient(), right), 429, "rate_limited")
    assert calls == []


@pytest.mark.django_db(transaction=True)
def test_failures_are_counted_atomically_across_threads(settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "console_token_failures_per_username": "20/hour"},
    }
    user = UserFactory()
    wrong = {"username": user.username, "password": "x"}
    results = run_concurrently(lambda i: post(_from(f"198.51.100.{i}"), wrong).status_code, 16)
    assert results == [401] * 16
    # Every one of the 16 was counted (no lost update): 4 more reach the limit of 20.
    for i in range(4):
        assert post(_from(f"198.51.100.{100 + i}"), wrong).status_code == 401
    right = {"username": user.username, "password": PASSWORD}
    assert_error(post(_from("198.51.100.200"), right), 429, "rate_limited")


# --- console sign-out, the token prefix and the per-user cap (issue 13, item 8) ------------------


def _sign_in(user) -> str:
    response = post(APIClient(), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 201, response.content
    return response.json()["token"]


def _with_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_console_tokens_start_with_ob_con(user):
    token = _sign_in(user)
    assert re.fullmatch(r"ob_con_[0-9a-f]{64}", token), token
    assert _with_token(token).get("/api/v1/deployments").status_code == 200


def test_logout_revokes_the_calling_token_and_only_it(user):
    first, second = _sign_in(user), _sign_in(user)
    response = _with_token(first).post("/api/v1/auth/logout")
    assert response.status_code == 204 and response.content == b""
    assert_error(_with_token(first).get("/api/v1/deployments"), 401, "authentication_failed")
    assert_error(_with_token(first).post("/api/v1/auth/logout"), 401, "authentication_failed")
    assert _with_token(second).get("/api/v1/deployments").status_code == 200
    assert AuthToken.objects.filter(user=user).count() == 1


def test_logout_of_a_session_ends_the_session(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/api/v1/deployments")  # a session, but no CSRF token yet: refused
    assert_error(client.post("/api/v1/auth/logout"), 403, "csrf_failed")
    client.cookies["csrftoken"] = "a" * 32
    response = client.post("/api/v1/auth/logout", HTTP_X_CSRFTOKEN="a" * 32)
    assert response.status_code == 204
    assert_error(client.get("/api/v1/deployments"), 401, "not_authenticated")


def test_logout_without_credentials_is_401():
    assert_error(APIClient().post("/api/v1/auth/logout"), 401, "not_authenticated")
    assert_error(APIClient().post("/api/v1/auth/logout-all"), 401, "not_authenticated")


def test_logout_all_revokes_every_console_token_of_the_user_and_no_one_elses(user, other_user):
    mine = [_sign_in(user) for _ in range(3)]
    theirs = AuthToken.objects.create(user=other_user)[1]
    assert _with_token(mine[0]).post("/api/v1/auth/logout-all").status_code == 204
    for token in mine:
        assert_error(_with_token(token).get("/api/v1/deployments"), 401, "authentication_failed")
    assert not AuthToken.objects.filter(user=user).exists()
    assert _with_token(theirs).get("/api/v1/deployments").status_code == 200


def test_signing_in_at_the_cap_revokes_the_oldest_token(user, settings):
    settings.BUDDY_CONSOLE_TOKENS_PER_USER = 3
    tokens = []
    for i in range(5):
        with time_machine.travel(timezone.now() + timedelta(seconds=i)):
            tokens.append(_sign_in(user))
    assert AuthToken.objects.filter(user=user).count() == 3
    for token in tokens[:2]:
        assert_error(_with_token(token).get("/api/v1/deployments"), 401, "authentication_failed")
    for token in tokens[2:]:
        assert _with_token(token).get("/api/v1/deployments").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_concurrent_sign_ins_never_exceed_the_cap(settings):
    settings.BUDDY_CONSOLE_TOKENS_PER_USER = 2
    user = UserFactory()
    results = run_concurrently(lambda _i: _sign_in(user), 6)
    assert all(isinstance(r, str) for r in results), results
    assert AuthToken.objects.filter(user=user).count() == 2
