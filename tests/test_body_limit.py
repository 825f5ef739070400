"""Input that must not hurt: every endpoint refuses a body over its limit with `413
request_too_large` before reading it whole, and JSON nested too deeply is `400 invalid_json`
(API.md, "Operations (v2)")."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import Client, override_settings
from django.urls import reverse

from buddy.accounts.selectors import service_token_cache
from buddy.accounts.services import service_token_create
from buddy.http.body_limit import BodySizeLimit
from keys import services as key_services
from keys.models import ApiKey
from tests.harness.processes import buddy_server

KIB = 1024
MIB = 1024 * KIB
SMALL_LIMIT = 64 * KIB  # BUDDY_MAX_BODY_BYTES' default
GATEWAY_LIMIT = 4 * MIB  # BUDDY_GATEWAY_MAX_BODY_BYTES' default
TOO_LARGE = {
    "message": "The request body is larger than the {} bytes this endpoint accepts.",
    "type": "invalid_request_error",
    "code": "request_too_large",
    "param": None,
}
NON_GATEWAY_POSTS = [
    "/api/v1/auth/token",
    "/api/v1/deployments",
    "/internal/v1/auth/lookup",
    "/internal/v1/deployments/00000000-0000-0000-0000-000000000000/status",
    "/admin/login/",
    "/healthz",
    "/no/such/page",
]


def too_large(limit: int) -> dict:
    return {"error": {**TOO_LARGE, "message": TOO_LARGE["message"].format(limit)}}


@pytest.fixture(autouse=True)
def _fresh_service_token_cache():
    service_token_cache.clear()
    yield
    service_token_cache.clear()


# --- by Content-Length, in the middleware (WSGI and ASGI alike) ------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", NON_GATEWAY_POSTS)
def test_a_body_over_64_kib_is_refused_on_every_non_gateway_endpoint(path):
    response = Client().post(
        path, data=b"{" + b" " * SMALL_LIMIT + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json() == too_large(SMALL_LIMIT)


@pytest.mark.django_db
def test_a_body_at_the_limit_is_read_as_usual():
    body = json.dumps({"username": "nobody", "password": "wrong"}).encode()
    body += b" " * (SMALL_LIMIT - len(body))  # JSON may end in whitespace
    assert len(body) == SMALL_LIMIT
    response = Client().post("/api/v1/auth/token", data=body, content_type="application/json")
    assert response.status_code == 401  # the credentials were read, and refused
    assert response.json()["error"]["code"] == "invalid_credentials"


@pytest.mark.django_db
def test_gateway_paths_take_up_to_4_mib():
    client = Client()
    three_mib = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 3 * MIB}]})
    # Read whole (Django's own 2.5 MB cap does not cut in first): refused for the missing key.
    accepted = client.post("/v1/chat/completions", data=three_mib, content_type="application/json")
    assert accepted.status_code == 400
    assert accepted.json()["error"]["code"] == "missing_api_key"
    over = client.post(
        "/v1/chat/completions", data=b" " * (GATEWAY_LIMIT + 1), content_type="application/json"
    )
    assert over.status_code == 413 and over.json() == too_large(GATEWAY_LIMIT)
    model_server = client.post(
        "/local-model/v1/chat/completions",
        data=b" " * (GATEWAY_LIMIT + 1),
        content_type="application/json",
    )
    assert model_server.status_code == 413


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("/api/v1/auth/token", 11, 413),
        ("/api/v1/auth/token", 10, 400),  # read, and not JSON
        ("/v1/chat/completions", 21, 413),
        ("/v1/chat/completions", 15, 400),
    ],
)
def test_the_limits_come_from_settings(path, size, status):
    with override_settings(BUDDY_MAX_BODY_BYTES=10, BUDDY_GATEWAY_MAX_BODY_BYTES=20):
        response = Client().post(path, data=b"x" * size, content_type="application/json")
    assert response.status_code == status


@pytest.mark.django_db
def test_admin_forms_with_many_fields_keep_working(admin_client, ready_deployment):
    """An action on a full changelist page posts a field per selected row: far below 64 KiB."""
    for n in range(5):
        key_services.key_create(deployment_id=ready_deployment.pk, name=f"k{n}", actor="t")
    selected = [str(key.pk) for key in ApiKey.objects.all()]
    selected += [str(uuid.uuid4()) for _ in range(500)]  # ids of rows that do not exist
    response = admin_client.post(
        reverse("admin:keys_apikey_changelist"),
        {
            "action": "revoke",
            "_selected_action": selected,
            "reason": "revoked_by_operator",
            "apply": "1",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 0


# --- nested too deeply ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_json_nested_too_deeply_is_invalid_json_on_the_console_api(api, ready_deployment):
    deep = "[" * 50_000  # under the body limit, far over the decoder's depth
    for path in ["/api/v1/deployments", f"/api/v1/deployments/{ready_deployment.pk}/keys"]:
        response = api.post(path, data=deep, content_type="application/json")
        assert response.status_code == 400, path
        assert response.json()["error"]["code"] == "invalid_json"
    signin = Client().post("/api/v1/auth/token", data=deep, content_type="application/json")
    assert signin.status_code == 400 and signin.json()["error"]["code"] == "invalid_json"


@pytest.mark.django_db
def test_json_nested_too_deeply_is_invalid_json_on_the_lookup():
    _token, secret = service_token_create(name="edge", role="proxy")
    response = Client().post(
        "/internal/v1/auth/lookup",
        data='{"authorization": ' + "[" * 50_000,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.django_db
def test_a_hundred_thousand_brackets_are_refused_before_they_are_parsed(api):
    response = api.post("/api/v1/deployments", data="[" * 100_000, content_type="application/json")
    assert response.status_code == 413


# --- streamed (chunked) bodies, under the ASGI server ---------------------------------------------


def _run_asgi(app, path: str, chunks, headers=()) -> tuple[int, bytes, int]:
    """Drive `app` with a body sent in `chunks`; (status, body, chunks the app asked for)."""
    sent: list[dict] = []
    asked = 0

    async def go() -> None:
        nonlocal asked
        iterator = iter(chunks)

        async def receive():
            nonlocal asked
            asked += 1
            chunk = next(iterator, None)
            if chunk is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), *headers],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)

    async_to_sync(go)()
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, asked


def test_a_streamed_body_is_counted_and_cut_off_at_the_first_chunk_over_the_limit():
    """Django's ASGI handler would read an endless body whole (spooling it to disk): wrapped, it
    stops at the limit. Driven with the real application, body chunk by body chunk."""
    from django.core.asgi import get_asgi_application

    app = BodySizeLimit(get_asgi_application())
    endless = (b" " * KIB for _ in range(10**9))  # a terabyte, if anyone read it all
    status, body, asked = _run_asgi(app, "/api/v1/auth/token", endless)
    assert status == 413 and json.loads(body) == too_large(SMALL_LIMIT)
    assert asked == 65  # 64 KiB read, the 65th chunk is over
    status, _body, asked = _run_asgi(app, "/v1/chat/completions", endless)
    assert status == 413 and asked == 4 * KIB + 1
    declared = [(b"content-length", str(10 * MIB).encode())]
    status, _body, asked = _run_asgi(app, "/v1/chat/completions", endless, declared)
    assert status == 413 and asked == 0  # refused on its header, not a byte read


@pytest.mark.django_db(transaction=True)
def test_uvicorn_refuses_chunked_and_declared_bodies_over_the_limit():
    def chunked(size: int):
        step = 16 * KIB
        for offset in range(0, size, step):
            yield b" " * min(step, size - offset)

    with buddy_server("uvicorn") as url, httpx.Client(base_url=url, timeout=30) as client:
        lookup = "/internal/v1/auth/lookup"
        small = client.post(
            lookup, content=chunked(KIB), headers={"Content-Type": "application/json"}
        )
        assert small.status_code == 403  # read, and refused for its missing service token
        big = client.post(
            lookup, content=chunked(1 * MIB), headers={"Content-Type": "application/json"}
        )
        assert big.status_code == 413 and big.json() == too_large(SMALL_LIMIT)
        declared = client.post("/api/v1/auth/token", content=b" " * (SMALL_LIMIT + 1))
        assert declared.status_code == 413 and declared.json() == too_large(SMALL_LIMIT)
        # The gateway judges the key before it reads a byte of the body (its own caps, with a
        # valid key: tests/gateway/test_hot_path.py): without one, any size is refused unread.
        for size in (1 * MIB, 6 * MIB):
            gateway = client.post("/v1/chat/completions", content=chunked(size))
            assert gateway.status_code == 400, size
            assert gateway.json()["error"]["code"] == "missing_api_key"
        assert client.get("/healthz").status_code == 200  # the server is still serving
