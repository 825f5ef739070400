"""The OpenAPI document, and the API tested against it by schemathesis (in-process, WSGI)."""

import json

import pytest
import schemathesis
import yaml
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from deployments import services
from keys.services import key_create_default
from tests.console import token_client
from tests.factories import DeploymentFactory

CONSOLE_OPERATIONS = {
    ("post", "/api/v1/auth/token"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/logout-all"),
    ("get", "/api/v1/templates"),
    ("post", "/api/v1/deployments"),
    ("get", "/api/v1/deployments"),
    ("get", "/api/v1/deployments/{deployment_id}"),
    ("post", "/api/v1/deployments/{deployment_id}/stop"),
    ("post", "/api/v1/deployments/{deployment_id}/extend"),
    ("get", "/api/v1/deployments/{deployment_id}/events"),
    ("get", "/api/v1/deployments/{deployment_id}/keys"),
    ("post", "/api/v1/deployments/{deployment_id}/keys"),
    ("get", "/api/v1/keys"),
    ("get", "/api/v1/keys/{key_id}"),
    ("post", "/api/v1/keys/{key_id}/reveal"),
    ("post", "/api/v1/keys/{key_id}/revoke"),
}


def _schema() -> dict:
    response = APIClient().get("/api/schema")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_schema_is_openapi_3_and_documents_every_console_operation():
    document = _schema()
    assert document["openapi"].startswith("3.")
    operations = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert operations >= CONSOLE_OPERATIONS


def test_every_console_operation_documents_its_errors_with_the_error_body():
    document = _schema()
    expected = {
        ("post", "/api/v1/auth/token"): {"400", "401", "429"},
        ("post", "/api/v1/deployments"): {"400", "401", "403"},
        ("post", "/api/v1/deployments/{deployment_id}/stop"): {"401", "404", "409"},
        ("post", "/api/v1/deployments/{deployment_id}/extend"): {"400", "404", "409"},
        ("post", "/api/v1/deployments/{deployment_id}/keys"): {"400", "404", "409"},
        ("get", "/api/v1/keys/{key_id}"): {"401", "404"},
        ("post", "/api/v1/keys/{key_id}/reveal"): {"404", "409", "410"},
    }
    for method, path in CONSOLE_OPERATIONS:
        responses = document["paths"][path][method]["responses"]
        errors = {code for code in responses if code >= "400"}
        assert errors >= expected.get((method, path), {"401"}), (method, path, errors)
        for code in errors:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    error = document["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"message", "type", "code", "param"}


def test_the_schema_is_json_for_a_client_that_accepts_anything_and_yaml_on_request():
    plain = APIClient().get("/api/schema", HTTP_ACCEPT="*/*")
    assert plain.status_code == 200
    assert plain["Content-Type"].startswith("application/json")
    assert json.loads(plain.content)["openapi"].startswith("3.")
    for asked in ({"HTTP_ACCEPT": "application/yaml"}, {"QUERY_STRING": "format=yaml"}):
        response = APIClient().get("/api/schema", **asked)
        assert response.status_code == 200
        assert not response.content.lstrip().startswith(b"{")
        assert yaml.safe_load(response.content)["openapi"].startswith("3.")


def test_the_browsable_docs_page_is_served():
    response = APIClient().get("/api/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"/api/schema" in response.content


# Loaded once at collection (no database needed to build the document); pytest-django has set
# Django up by then. (schemathesis' lazy `from_fixture` does not work with pytest 9.)
console_schema = schemathesis.openapi.from_wsgi("/api/schema", get_wsgi_application()).include(
    path_regex="^/api/v1/"
)


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """Called straight through WSGI, each request would end by closing the test's database
    connection (and with it the test's transaction); Django's own test client avoids it so."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def console_token(user):
    """A signed-in user who owns a ready deployment with its default key."""
    deployment = DeploymentFactory(owner=user, ready=True)
    key_create_default(deployment_id=deployment.pk)
    return token_client(user)._credentials["HTTP_AUTHORIZATION"]


@console_schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db
def test_the_console_api_conforms_to_its_schema(
    case, console_token, wsgi_keeps_the_test_connection
):
    case.call_and_validate(
        headers={"Authorization": console_token},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            # ... and it refuses what the schema does not allow, and nothing works without auth.
            negative_data_rejection,
            ignored_auth,
            missing_required_header,
            unsupported_method,
        ],
    )


@pytest.mark.django_db
def test_real_answers_of_a_whole_journey_match_the_schema(user, wsgi_keeps_the_test_connection):
    """Generated ids rarely name a real object, so walk through real ones as well."""
    authorization = token_client(user)._credentials["HTTP_AUTHORIZATION"]
    headers = {"Authorization": authorization}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    def call(method, path, expected, body=None, **path_parameters):
        operation = console_schema[path][method]
        kwargs = {} if body is None else {"body": body, "media_type": "application/json"}
        case = operation.Case(path_parameters=path_parameters or None, **kwargs)
        response = case.call_and_validate(headers=headers, checks=checks)
        assert response.status_code == expected, (method, path, response.text[:300])
        return response.json()

    deployment = call(
        "POST", "/api/v1/deployments", 201, {"template": "gemma4-26b", "pack_hours": 1}
    )
    did = deployment["id"]
    services.deployment_mark_ready(
        deployment_id=did, endpoint_url="http://10.0.0.1:8000", actor="t"
    )
    default_key = key_create_default(deployment_id=did)
    call("GET", "/api/v1/templates", 200)
    call("GET", "/api/v1/deployments", 200)
    call("GET", "/api/v1/deployments/{deployment_id}", 200, deployment_id=did)
    call(
        "POST",
        "/api/v1/deployments/{deployment_id}/extend",
        200,
        {"pack_hours": 8},
        deployment_id=did,
    )
    key = call(
        "POST", "/api/v1/deployments/{deployment_id}/keys", 201, {"name": "ci"}, deployment_id=did
    )
    call("GET", "/api/v1/deployments/{deployment_id}/keys", 200, deployment_id=did)
    call("GET", "/api/v1/keys", 200)
    call("GET", "/api/v1/keys/{key_id}", 200, key_id=key["id"])
    call("POST", "/api/v1/keys/{key_id}/reveal", 200, key_id=str(default_key.pk))
    call("POST", "/api/v1/keys/{key_id}/reveal", 410, key_id=str(default_key.pk))
    call("POST", "/api/v1/keys/{key_id}/reveal", 410, key_id=key["id"])
    call("POST", "/api/v1/keys/{key_id}/revoke", 200, key_id=key["id"])
    call("POST", "/api/v1/keys/{key_id}/reveal", 409, key_id=key["id"])
    call("POST", "/api/v1/deployments/{deployment_id}/stop", 202, deployment_id=did)
    call("POST", "/api/v1/deployments/{deployment_id}/stop", 409, deployment_id=did)
    call(
        "POST", "/api/v1/deployments/{deployment_id}/keys", 409, {"name": "late"}, deployment_id=did
    )
    call("GET", "/api/v1/deployments/{deployment_id}/events", 200, deployment_id=did)
    # Signing out answers 204 with no body, as documented; the token then stops working.
    for path in ("/api/v1/auth/logout", "/api/v1/auth/logout-all"):
        operation = console_schema[path]["POST"]
        response = operation.Case().call_and_validate(headers=headers, checks=checks)
        assert response.status_code == 204 and not response.content, (path, response.text[:300])
        if path.endswith("/logout"):
            headers["Authorization"] = token_client(user)._credentials["HTTP_AUTHORIZATION"]
    for revoked in (authorization, headers["Authorization"]):
        assert APIClient(HTTP_AUTHORIZATION=revoked).get("/api/v1/templates").status_code == 401
