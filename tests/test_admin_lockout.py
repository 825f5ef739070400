"""`/admin/login/` locks out per username and per client address (django-axes), before any
password is hashed (issue 13, item 7)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.backends import ModelBackend
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LOGIN = "/admin/login/"


@pytest.fixture
def staff():
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def other_staff():
    return UserFactory(is_staff=True, is_superuser=True)


def sign_in(username: str, password: str, address: str = "192.0.2.1") -> tuple[int, Client]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})
    return response.status_code, client


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_a_right_password_signs_in_and_wrong_ones_are_the_form_again(staff):
    code, client = sign_in(staff.username, "wrong")
    assert code == 200 and not signed_in(client)
    code, client = sign_in(staff.username, PASSWORD)
    assert code == 302 and signed_in(client)


def test_the_fifth_wrong_password_locks_the_user_from_any_address(staff):
    for i in range(4):
        code, _ = sign_in(staff.username, "wrong", address=f"198.51.100.{i}")
        assert code == 200
    response = Client(REMOTE_ADDR="198.51.100.4").post(
        LOGIN, {"username": staff.username, "password": "wrong"}
    )
    assert response.status_code == 429
    assert b"Sign-in temporarily locked" in response.content
    # Now even the right password, from an address that never failed, is refused.
    code, client = sign_in(staff.username, PASSWORD, address="203.0.113.77")
    assert code == 429 and not signed_in(client)


def test_unknown_usernames_are_locked_too():
    for _ in range(5):
        sign_in("no-such-operator", "wrong")
    code, _ = sign_in("no-such-operator", "wrong", address="203.0.113.1")
    assert code == 429


def test_another_user_from_the_same_address_signs_in_until_the_address_limit(staff, other_staff):
    address = "192.0.2.50"
    for _ in range(5):  # `staff` is locked now; the address has 5 failures of its 20
        sign_in(staff.username, "wrong", address=address)
    code, client = sign_in(other_staff.username, PASSWORD, address=address)
    assert code == 302 and signed_in(client)
    for i in range(15):  # other usernames, up to the address's 20
        sign_in(f"guess-{i}", "wrong", address=address)
    code, client = sign_in(other_staff.username, PASSWORD, address=address)
    assert code == 429 and not signed_in(client)
    code, client = sign_in(other_staff.username, PASSWORD, address="192.0.2.51")
    assert code == 302 and signed_in(client)


def test_a_locked_out_sign_in_never_reaches_the_password_hasher(staff, monkeypatch):
    for _ in range(5):
        sign_in(staff.username, "wrong")
    calls = []
    original = ModelBackend.authenticate
    monkeypatch.setattr(
        ModelBackend, "authenticate", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    assert sign_in(staff.username, PASSWORD)[0] == 429
    assert sign_in("someone-else", "x", address="203.0.113.9")[0] == 200
    assert calls == [1]  # only the sign-in that was not locked out


def test_the_lock_ends_after_the_cool_off(staff):
    for _ in range(5):
        sign_in(staff.username, "wrong")
    assert sign_in(staff.username, PASSWORD)[0] == 429
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        code, client = sign_in(staff.username, PASSWORD)
    assert code == 302 and signed_in(client)


def test_an_operator_unlocks_a_username_with_axes_reset_username(staff):
    for _ in range(5):
        sign_in(staff.username, "wrong")
    assert sign_in(staff.username, PASSWORD)[0] == 429
    call_command("axes_reset_username", staff.username)
    code, client = sign_in(staff.username, PASSWORD)
    assert code == 302 and signed_in(client)


def test_console_sign_in_failures_do_not_lock_the_admin(staff):
    for i in range(8):
        response = APIClient(REMOTE_ADDR=f"198.51.100.{i}").post(
            "/api/v1/auth/token", {"username": staff.username, "password": "wrong"}, format="json"
        )
        assert response.status_code == 401
    code, client = sign_in(staff.username, PASSWORD)
    assert code == 302 and signed_in(client)
