"""The one error body outside and inside DRF: Django's own answers keep their useful headers."""

import pytest
from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404
from django.test import Client, override_settings

from tests.console import assert_error, token_client


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_wrong_method_outside_drf_is_405_json_with_allow(client, debug):
    with override_settings(DEBUG=debug):
        response = client.post("/healthz")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/api/v1/deployments/", "/api/v1/keys/123/reveal"]
)
def test_unknown_console_paths_are_404_json(client, path):
    assert_error(client.post(path), 404, "not_found")


@pytest.mark.django_db
def test_the_schema_is_served_without_authentication(client):
    response = client.get("/api/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [b"[" * 30_000 + b"]" * 30_000, b'{"pack_hours": NaN}', b"\xff\xfe{}", b'{"a": Infinity}'],
)
def test_bodies_that_are_not_plain_json_are_400_invalid_json(user, body):
    response = token_client(user).generic(
        "POST", "/api/v1/deployments", body, content_type="application/json"
    )
    assert_error(response, 400, "invalid_json")


# Django's own error answers, with no `handlerNNN` in the URLconf: the JSON-errors middleware turns
# each into the contract's body, with DEBUG on (technical pages) and off (Django's default pages).


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "path", ["/api/v1/templates", "/healthz", "/internal/v1/auth/lookup", "/v1/models", "/nope"]
)
def test_a_disallowed_host_header_is_400_json(client, debug, path):
    with override_settings(DEBUG=debug, ALLOWED_HOSTS=["buddy.example"]):
        response = client.get(path, HTTP_HOST="evil.example")
    error = assert_error(response, 400, "bad_request")
    assert error["type"] == "invalid_request_error"
    assert b"evil.example" not in response.content


class RaisingMiddleware:
    """Raises what the request's `X-Raise` header names, outside any view (where only Django's
    exception handling, and no DRF handler nor `process_exception`, sees it)."""

    RAISES = {
        "permission_denied": PermissionDenied,
        "suspicious": SuspiciousOperation,
        "bad_request": BadRequest,
        "not_found": Http404,
        "boom": RuntimeError,
    }

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.headers.get("X-Raise")
        if name:
            raise self.RAISES[name]("boom: /secret/path in a stack frame")
        return self.get_response(request)


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "raised, status, code",
    [
        ("bad_request", 400, "bad_request"),
        ("suspicious", 400, "bad_request"),
        ("permission_denied", 403, "permission_denied"),
        ("not_found", 404, "not_found"),
        ("boom", 500, "server_error"),
    ],
)
def test_errors_outside_views_are_json_whatever_debug_says(debug, raised, status, code):
    middleware = [*settings.MIDDLEWARE, f"{__name__}.RaisingMiddleware"]
    client = Client(raise_request_exception=False)
    with override_settings(DEBUG=debug, MIDDLEWARE=middleware):
        response = client.get("/api/v1/templates", HTTP_X_RAISE=raised)
    error = assert_error(response, status, code)
    assert error["type"] == {403: "authentication_error", 500: "server_error"}.get(
        status, "invalid_request_error"
    )
    assert b"boom" not in response.content and b"Traceback" not in response.content
