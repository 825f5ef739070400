"""The one error body outside and inside DRF: Django's own answers keep their useful headers."""

import pytest
from django.test import override_settings

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
    [b"[" * 100_000 + b"]" * 100_000, b'{"pack_hours": NaN}', b"\xff\xfe{}", b'{"a": Infinity}'],
)
def test_bodies_that_are_not_plain_json_are_400_invalid_json(user, body):
    response = token_client(user).generic(
        "POST", "/api/v1/deployments", body, content_type="application/json"
    )
    assert_error(response, 400, "invalid_json")
