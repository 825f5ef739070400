"""`POST /internal/v1/auth/lookup`: one test per row of the contract's lookup table, each asserted
with its exact status and code, cold (from PostgreSQL) and warm (from the Redis cache), through
Django's stack (the test client: the shortcut middleware) and through the WSGI front gunicorn
serves (`keys.lookup.middleware.ProxyLookupFront`)."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
import time_machine
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client, override_settings

from buddy.accounts.selectors import service_token_cache
from buddy.accounts.services import service_token_create, service_token_revoke
from deployments.models import Deployment
from deployments.services import deployment_stop
from keys import services, tokens
from keys.lookup.middleware import ProxyLookupFront
from tests.factories import DeploymentFactory
from tests.harness.wsgi import wsgi_call

pytestmark = pytest.mark.django_db
URL = "/internal/v1/auth/lookup"


@pytest.fixture(autouse=True)
def _fresh_service_token_cache():
    service_token_cache.clear()
    yield
    service_token_cache.clear()


@pytest.fixture
def proxy_token(db) -> str:
    _token, secret = service_token_create(name="edge", role="proxy")
    return secret


@pytest.fixture
def front():
    """The WSGI front as `buddy.wsgi` builds it, but leaving the test transaction's connection
    open (as the test client does), and counting what it hands to Django."""
    django_app = WSGIHandler()
    handed: list[str] = []

    def django(environ, start_response):  # type: ignore[no-untyped-def]
        handed.append(environ["REQUEST_METHOD"])
        return django_app(environ, start_response)

    app = ProxyLookupFront(django_app, close_connections=False)
    app.django = django  # type: ignore[assignment]
    app.handed = handed  # type: ignore[attr-defined]
    # What Django hands on runs its request signals: like the test client, keep them off the
    # test transaction's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield app
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture(params=["django", "front"])
def call(request, proxy_token, front):
    if request.param == "django":
        client = Client()

        def call(body: object = None, *, raw: bytes | None = None, token: str | None = proxy_token):
            headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
            data = raw if raw is not None else json.dumps(body)
            return client.post(URL, data=data, content_type="application/json", **headers)

        return call

    # The first request of a Host goes through Django, which judges it; the front takes the rest.
    assert wsgi_call(front, "GET", URL).status_code == 405

    def call_front(
        body: object = None, *, raw: bytes | None = None, token: str | None = proxy_token
    ):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw if raw is not None else json.dumps(body).encode()
        handed = len(front.handed)
        answer = wsgi_call(front, "POST", URL, data, headers=headers)
        assert len(front.handed) == handed, "the front handed an ordinary lookup to Django"
        return answer

    return call_front


def error_of(response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"message", "type", "code", "param"}
    return response.status_code, body["error"]["code"]


def twice(call, body):
    """The same lookup cold and then warm: both must give the same answer."""
    first, second = call(body), call(body)
    assert (first.status_code, first.json()) == (second.status_code, second.json())
    return second


def test_valid_key_of_a_ready_deployment_answers_its_route(call, live_key, ready_deployment):
    key, plaintext = live_key
    for model in ("gemma4:26b", None):
        body = {"authorization": f"Bearer {plaintext}"}
        if model:
            body["model"] = model
        response = twice(call, body)
        assert response.status_code == 200
        assert response.json() == {
            "deployment_id": str(ready_deployment.pk),
            "model": "gemma4:26b",
            "endpoint_url": ready_deployment.endpoint_url,
            "key_id": str(key.pk),
        }
        assert response["Cache-Control"] == "no-store"
        assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b"[]", b'"a string"', b"5", b"null"])
def test_invalid_json_or_a_body_that_is_not_an_object(call, raw):
    assert error_of(call(raw=raw)) == (400, "invalid_json")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"authorization": None},
        {"authorization": ""},
        {"authorization": "   "},
        {"authorization": "Bearer"},
        {"authorization": "Bearer   "},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Token abc"},
        {"authorization": 5},
        {"model": "gemma4:26b"},
    ],
)
def test_no_authorization_blank_or_not_bearer_is_missing_api_key(call, body):
    assert error_of(call(body)) == (400, "missing_api_key")


def test_model_of_another_deployment_is_model_mismatch(call, live_key):
    _, plaintext = live_key
    body = {"authorization": f"Bearer {plaintext}", "model": "qwen3.6:27b"}
    assert error_of(twice(call, body)) == (400, "model_mismatch")


def _flip(plaintext: str, index: int) -> str:
    return plaintext[:index] + ("A" if plaintext[index] != "A" else "B") + plaintext[index + 1 :]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: "sk-proj-abcdef",  # not an ob_sk_ key
        lambda p: p + "x",  # too long
        lambda p: p[:-1],  # too short
        lambda p: p[:20] + "-" + p[21:],  # outside the alphabet
        lambda p: _flip(p, -7),  # checksum no longer matches
        lambda p: tokens.generate().plaintext,  # unknown public id
    ],
    ids=["not-ob_sk", "long", "short", "alphabet", "checksum", "unknown-public-id"],
)
def test_malformed_or_unknown_key_is_invalid_api_key(call, live_key, make):
    _, plaintext = live_key
    assert error_of(twice(call, {"authorization": f"Bearer {make(plaintext)}"})) == (
        401,
        "invalid_api_key",
    )


def test_wrong_secret_with_a_real_public_id_is_invalid_api_key(call, live_key):
    key, plaintext = live_key
    call({"authorization": f"Bearer {plaintext}"})  # the real key is cached now
    head = "ob_sk_" + key.public_id + "x" * 30
    forged = head + tokens.checksum(head)
    assert error_of(call({"authorization": f"Bearer {forged}"})) == (401, "invalid_api_key")


@pytest.mark.parametrize("warm", [False, True])
def test_revoked_key_is_revoked_api_key_even_with_a_wrong_model(call, live_key, warm):
    key, plaintext = live_key
    if warm:
        assert call({"authorization": f"Bearer {plaintext}"}).status_code == 200
    services.key_revoke(key_id=key.pk, actor="t")
    body = {"authorization": f"Bearer {plaintext}", "model": "other"}
    assert error_of(twice(call, body)) == (401, "revoked_api_key")


def test_key_of_a_deleted_deployment_is_deployment_not_found(call, live_key, ready_deployment):
    _, plaintext = live_key
    assert call({"authorization": f"Bearer {plaintext}"}).status_code == 200
    Deployment.objects.filter(pk=ready_deployment.pk).delete()
    body = {"authorization": f"Bearer {plaintext}", "model": "other"}
    assert error_of(twice(call, body)) == (404, "deployment_not_found")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("pending", "deployment_not_ready"),
        ("provisioning", "deployment_not_ready"),
        ("stopped", "deployment_stopped"),
        ("failed", "deployment_failed"),
        ("terminated", "deployment_terminated"),
    ],
)
def test_deployment_status_answers_its_409_before_model_mismatch(
    call, live_key, ready_deployment, status, code
):
    _, plaintext = live_key
    Deployment.objects.filter(pk=ready_deployment.pk).update(status=status)
    body = {"authorization": f"Bearer {plaintext}", "model": "wrong-model"}
    assert error_of(twice(call, body)) == (409, code)


def test_stopped_through_the_service_answers_revoked_at_once(call, live_key, ready_deployment):
    _, plaintext = live_key
    assert call({"authorization": f"Bearer {plaintext}"}).status_code == 200
    deployment_stop(deployment_id=ready_deployment.pk, actor="t")
    # The revoke-all task has not run: the stop revoked the key in its own transaction.
    assert error_of(call({"authorization": f"Bearer {plaintext}"})) == (401, "revoked_api_key")


@pytest.mark.parametrize("warm", [False, True])
def test_ended_pack_answers_deployment_terminated_before_the_sweep(
    call, live_key, ready_deployment, warm
):
    _, plaintext = live_key
    if warm:
        assert call({"authorization": f"Bearer {plaintext}"}).status_code == 200
    with time_machine.travel(ready_deployment.pack_ends_at + timedelta(seconds=1)):
        response = call({"authorization": f"Bearer {plaintext}"})
    assert error_of(response) == (409, "deployment_terminated")


@override_settings(BUDDY_LOOKUP_FAILURE_LIMIT=3, BUDDY_LOOKUP_FAILURE_WINDOW_SECONDS=60)
def test_too_many_failed_verifications_for_one_public_id_answer_429_with_retry_after(
    call, live_key
):
    key, plaintext = live_key
    head = "ob_sk_" + key.public_id + "y" * 30
    forged = {"authorization": f"Bearer {head + tokens.checksum(head)}"}
    for _ in range(3):
        assert error_of(call(forged)) == (401, "invalid_api_key")
    response = call(forged)
    assert error_of(response) == (429, "rate_limited")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(response["Retry-After"]) <= 60
    # The real key, not yet cached, would need a verification too: refused as well.
    assert error_of(call({"authorization": f"Bearer {plaintext}"})) == (429, "rate_limited")
    # Malformed keys are refused by their form first (no verification is needed).
    assert error_of(call({"authorization": f"Bearer {_flip(plaintext, -7)}"})) == (
        401,
        "invalid_api_key",
    )


@override_settings(BUDDY_LOOKUP_FAILURE_LIMIT=3)
def test_a_cached_key_is_not_locked_out_by_someone_guessing_its_secret(call, live_key):
    key, plaintext = live_key
    assert call({"authorization": f"Bearer {plaintext}"}).status_code == 200
    head = "ob_sk_" + key.public_id + "z" * 30
    forged = {"authorization": f"Bearer {head + tokens.checksum(head)}"}
    for _ in range(5):
        call(forged)
    assert error_of(call(forged)) == (429, "rate_limited")
    assert call({"authorization": f"Bearer {plaintext}"}).status_code == 200


@override_settings(BUDDY_LOOKUP_FAILURE_LIMIT=2)
def test_rate_limit_does_not_hide_a_revoked_keys_answer_from_its_owner(call, live_key):
    key, plaintext = live_key
    call({"authorization": f"Bearer {plaintext}"})
    services.key_revoke(key_id=key.pk, actor="t")
    assert error_of(call({"authorization": f"Bearer {plaintext}"})) == (401, "revoked_api_key")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer ",
        "Bearer ob_svc_wrong",
        "Token ob_svc_x",
        "Bearer " + "ob_svc_" + "a" * 200,
    ],
)
def test_missing_or_wrong_service_token_is_service_auth_failed(call, live_key, header):
    client = Client()
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.post(
        URL,
        data=json.dumps({"authorization": f"Bearer {live_key[1]}"}),
        content_type="application/json",
        **extra,
    )
    assert error_of(response) == (403, "service_auth_failed")


def test_provisioner_token_is_service_auth_failed(call, live_key):
    _token, secret = service_token_create(name="prov", role="provisioner")
    response = call({"authorization": f"Bearer {live_key[1]}"}, token=secret)
    assert error_of(response) == (403, "service_auth_failed")


def test_service_auth_is_checked_before_the_body(call):
    assert error_of(call(raw=b"{", token="ob_svc_nope")) == (403, "service_auth_failed")


def test_revoked_service_token_is_refused(call, live_key):
    token, secret = service_token_create(name="old", role="proxy")
    service_token_revoke(token_id=token.pk)
    response = call({"authorization": f"Bearer {live_key[1]}"}, token=secret)
    assert error_of(response) == (403, "service_auth_failed")


def test_only_post_is_allowed(proxy_token):
    response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {proxy_token}")
    assert error_of(response) == (405, "method_not_allowed")


def test_other_deployments_keys_route_to_their_own_deployment(call, live_key):
    other = DeploymentFactory(ready=True, endpoint_url="http://other:1")
    _, plaintext = services.key_create(deployment_id=other.pk, name="b", actor="t")
    for key_plaintext, url in (
        (live_key[1], "http://127.0.0.1:9/model"),
        (plaintext, "http://other:1"),
    ):
        assert (
            twice(call, {"authorization": f"Bearer {key_plaintext}"}).json()["endpoint_url"] == url
        )


def test_lookup_is_in_the_openapi_schema(db):
    response = Client().get("/api/schema", HTTP_ACCEPT="application/json")
    if response.status_code == 404:  # the schema route belongs to the console API branch
        from drf_spectacular.generators import SchemaGenerator

        schema = SchemaGenerator().get_schema(request=None, public=True)
    else:
        schema = response.json()
    assert "/internal/v1/auth/lookup" in schema["paths"]


def test_the_host_is_judged_on_every_lookup_even_once_accepted(proxy_token, live_key):
    """The shortcut remembers the Host values it accepted: another is still refused, and a
    change of ALLOWED_HOSTS forgets them."""
    _key, plaintext = live_key
    body = {"authorization": f"Bearer {plaintext}"}
    client = Client()
    with override_settings(ALLOWED_HOSTS=["buddy.example"]):
        ok = client.post(
            URL,
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {proxy_token}",
        )
        assert ok.status_code == 400  # the test client's "testserver" is not allowed here
        accepted = client.post(
            URL, data=json.dumps(body), content_type="application/json", HTTP_HOST="buddy.example"
        )
        assert accepted.status_code == 403  # past the host check: refused for its missing token
        refused = client.post(
            URL, data=json.dumps(body), content_type="application/json", HTTP_HOST="evil.example"
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request"
    with override_settings(ALLOWED_HOSTS=["other.example"]):
        forgotten = client.post(
            URL, data=json.dumps(body), content_type="application/json", HTTP_HOST="buddy.example"
        )
        assert forgotten.status_code == 400


# --- the WSGI front (gunicorn's way in) ------------------------------------------------------------


def _lookup(front, proxy_token, plaintext, **kwargs):  # type: ignore[no-untyped-def]
    body = json.dumps({"authorization": f"Bearer {plaintext}", "model": "gemma4:26b"}).encode()
    headers = {"Authorization": f"Bearer {proxy_token}", **kwargs.pop("headers", {})}
    return wsgi_call(front, kwargs.pop("method", "POST"), URL, body, headers=headers, **kwargs)


def test_the_front_hands_django_every_lookup_that_is_not_ordinary(front, proxy_token, live_key):
    """A Host not yet judged, another method, a body declared over the limit, a Host that is not
    allowed: Django answers them (as before the front); the ordinary lookup is the front's."""
    _key, plaintext = live_key
    with override_settings(ALLOWED_HOSTS=["first.example", "testserver"]):
        first = _lookup(front, proxy_token, plaintext, host="first.example")
        assert first.status_code == 200 and front.handed == ["POST"]  # judged by Django
        again = _lookup(front, proxy_token, plaintext, host="first.example")
        assert again.status_code == 200 and again.json() == first.json()
        assert front.handed == ["POST"]  # the front's
        wrong_method = _lookup(front, proxy_token, plaintext, host="first.example", method="PUT")
        assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (
            405,
            "method_not_allowed",
        )
        assert wrong_method["Allow"] == "POST"
        too_large = _lookup(
            front, proxy_token, plaintext, host="first.example", content_length="70000"
        )
        assert (too_large.status_code, too_large.json()["error"]["code"]) == (
            413,
            "request_too_large",
        )
        assert front.handed == ["POST", "PUT", "POST"]
    with override_settings(ALLOWED_HOSTS=["other.example"]):
        refused = _lookup(front, proxy_token, plaintext, host="first.example")
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "bad_request")
        assert len(front.handed) == 4  # a change of ALLOWED_HOSTS: judged again, by Django


def test_the_front_answers_as_django_does_with_the_request_id_and_access_line(
    front, proxy_token, live_key, caplog
):
    _key, plaintext = live_key
    via_django = Client().post(
        URL,
        data=json.dumps({"authorization": f"Bearer {plaintext}", "model": "gemma4:26b"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {proxy_token}",
    )
    assert wsgi_call(front, "GET", URL).status_code == 405  # the Host, judged by Django
    caplog.set_level(logging.DEBUG, logger="buddy.access")
    caplog.clear()
    answer = _lookup(front, proxy_token, plaintext, headers={"X-Request-ID": "proxy-7.2"})
    assert front.handed == ["GET"]
    assert (answer.status_code, answer.content) == (200, via_django.content)
    assert [name for name, _ in answer.header_list] == [
        "Content-Type",
        "Cache-Control",
        "X-Request-ID",
    ]
    assert answer["Content-Type"] == via_django["Content-Type"] == "application/json"
    assert answer["Cache-Control"] == "no-store"
    assert answer["X-Request-ID"] == "proxy-7.2"
    (record,) = [r for r in caplog.records if r.name == "buddy.access"]
    assert (record.levelno, record.method, record.path, record.status) == (  # type: ignore[attr-defined]
        logging.DEBUG,
        "POST",
        URL,
        200,
    )
    fresh = _lookup(front, proxy_token, plaintext, headers={"X-Request-ID": "bad id\n"})
    assert len(fresh["X-Request-ID"]) == 32 and fresh["X-Request-ID"] != "bad id\n"


def test_a_cached_lookup_through_the_front_runs_no_sql(
    front, proxy_token, live_key, django_assert_num_queries
):
    _key, plaintext = live_key
    assert _lookup(front, proxy_token, plaintext).status_code == 200  # fills the cache
    with django_assert_num_queries(0):
        assert _lookup(front, proxy_token, plaintext).status_code == 200
    assert front.handed == []


def test_an_error_inside_the_front_answers_the_contracts_500(
    front, proxy_token, live_key, monkeypatch, caplog
):
    """The same 500 body Django's stack answers, logged with its traceback."""
    _key, plaintext = live_key
    assert wsgi_call(front, "GET", URL).status_code == 405

    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the lookup broke")

    monkeypatch.setattr("keys.lookup.apis.key_lookup", broken)
    caplog.clear()
    via_django = Client(raise_request_exception=False).post(
        URL,
        data=json.dumps({"authorization": f"Bearer {plaintext}"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {proxy_token}",
    )
    logged_by_django = [
        (r.name, r.levelno, r.getMessage(), bool(r.exc_info)) for r in caplog.records
    ]
    caplog.clear()
    answer = _lookup(front, proxy_token, plaintext, headers={"X-Request-ID": "proxy-500"})
    assert front.handed == ["GET"]
    assert answer.status_code == via_django.status_code == 500
    assert answer.json() == via_django.json()
    assert answer.json()["error"]["code"] == "server_error"
    assert answer["X-Request-ID"] == "proxy-500"
    logged = [(r.name, r.levelno, r.getMessage(), bool(r.exc_info)) for r in caplog.records]
    assert logged == logged_by_django
    assert "the lookup broke" in caplog.text  # with its traceback


@pytest.mark.django_db(transaction=True)
def test_the_front_closes_a_connection_past_its_age_after_a_lookup(live_key):
    """What Django's request signals did for a lookup that read PostgreSQL, the front does after
    each answer: a connection past CONN_MAX_AGE (or broken) is closed, not carried on."""
    from django.db import connection

    _token, secret = service_token_create(name="edge", role="proxy")
    front = ProxyLookupFront(WSGIHandler())
    _key, plaintext = live_key
    assert wsgi_call(front, "GET", URL).status_code == 405  # the Host, judged by Django
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1
    assert _lookup(front, secret, plaintext).status_code == 200
    assert connection.connection is None


@pytest.mark.usefixtures("fresh_lookup_state")
def test_a_key_with_limits_gets_the_same_headers_through_the_front(front, proxy_token, live_key):
    """The `x-ratelimit-*` headers and the 429's `Retry-After`, in Django's order."""
    key, plaintext = live_key
    services.key_update(key_id=key.pk, actor="t", rate_limit_rpm=2)
    assert wsgi_call(front, "GET", URL).status_code == 405  # the Host, judged by Django
    answers = [_lookup(front, proxy_token, plaintext) for _ in range(3)]
    assert front.handed == ["GET"]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a["x-ratelimit-remaining-requests"] for a in answers] == ["1", "0", "0"]
    assert [name for name, _ in answers[0].header_list] == [
        "Content-Type",
        "Cache-Control",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "X-Request-ID",
    ]
    refused = answers[2]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert [name for name, _ in refused.header_list][:3] == [
        "Content-Type",
        "Cache-Control",
        "Retry-After",
    ]
    assert 1 <= int(refused["Retry-After"]) <= 60
