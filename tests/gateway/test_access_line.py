"""The access line of the hot paths (`log_access`, written without a `LogRecord` to buddy's own
handlers): the same line the generic logging path writes, with its request id, and never a key,
even one the client put in the path or the query."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from buddy.accounts.services import service_token_create
from buddy.http.request_id import (
    _access_record,
    access_logger,
    bind_request_id,
    log_access,
    unbind_request_id,
)
from buddy.ops.logging import (
    REDACTED,
    JsonFormatter,
    RedactSecretsFilter,
    RequestIdFilter,
    TextFormatter,
    redact,
)
from gateway import upstream as gateway_upstream
from gateway.asgi import application as gateway_application
from keys.lookup import cache as lookup_cache
from keys.lookup.selectors import key_lookup
from tests.gateway.test_gateway import CHAT
from tests.test_logging import KEY, SERVICE_TOKEN, _secrets_in, log_lines  # noqa: F401 - a fixture

KNOX_PLAIN = "c0ffee" * 10


def _slow_line(formatter: logging.Formatter, level: int, request_id: str, method: str,
               path: str, status: int, duration_ms: float, created: float) -> str:  # fmt: skip
    """The line the generic path writes: a record, buddy's two filters, the formatter."""
    record = _access_record(level, method, path, status, duration_ms)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    record.request_id = request_id  # what RequestIdFilter puts on from the context
    for log_filter in (RequestIdFilter(), RedactSecretsFilter()):
        log_filter.filter(record)
    return formatter.format(record)


def _is_the_generic_line(line: str | None, formatter: logging.Formatter, level: int,
                         request_id: str, method: str, path: str, status: int,
                         created: float) -> bool:  # fmt: skip
    """`line` is the generic path's line; where that one redacted something, the same line with
    each client field (message, request id, method, path) redacted from its raw value. (The
    generic path redacts the escaped line, where a key spelled `ob\\u005fsk\\u005f...` in a
    path has its backslashes doubled and is missed; the direct line redacts before escaping.)"""
    duration_ms = 1.25 if status == 404 else 0.5
    generic = _slow_line(formatter, level, request_id, method, path, status, duration_ms, created)
    assert line is not None
    if REDACTED not in generic and REDACTED not in line:
        return line == generic
    message = redact(f"{method} {path} {status}")
    if isinstance(formatter, JsonFormatter):
        # (The generic line may not even be JSON: redacting the escaped line can eat a `\\"`.)
        plain = _slow_line(formatter, level, "r", "GET", "/", status, duration_ms, created)
        ours, theirs = json.loads(line), json.loads(plain)
        expected = {**theirs, "message": message, "request_id": redact(request_id),
                    "method": redact(method), "path": redact(path)}  # fmt: skip
        return list(ours.items()) == list(expected.items())
    prefix = generic[: generic.index(" [")]  # time, level, logger
    return line == f"{prefix} [{redact(request_id)}] {message}"


FORMATTERS = [JsonFormatter(), TextFormatter()]
PATHS = [
    "/v1/chat/completions",
    "/internal/v1/auth/lookup",
    f"/v1/models/{KEY}",
    f"/v1/x?api_key={KEY}",
    f'/v1/"token": "{KNOX_PLAIN}"',
    f"/v1/a\nToken {KNOX_PLAIN}",
    f"/v1/a\\nBearer {SERVICE_TOKEN}",
    "/v1/caf\u00e9/\u212aelvin\u0000\t\"'\\",
    f"/v1/ob%5Fsk%5F{KEY[6:]}",
    f"/v1/ob\\u005fsk\\u005f{KEY[6:]}",
]


@pytest.mark.parametrize("formatter", FORMATTERS, ids=["json", "text"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["POST", "TOKEN", "BEARER"])
def test_the_direct_line_is_the_line_of_the_generic_path(formatter, path, method):
    created = 1_796_000_000.123456
    for level, request_id in [(logging.INFO, "4f" * 16), (logging.DEBUG, f"edge.{KEY}")]:
        line = formatter.access_line(level, request_id, method, path, 404, 1.25, created)
        assert _is_the_generic_line(line, formatter, level, request_id, method, path, 404, created)
        assert not _secrets_in(line) and KNOX_PLAIN not in line


FRAGMENTS = ["/v1/", "token", "Bearer", "basic", "api_key", "pa\u017fsword", "=", " ", "\n",
             "\\n", '"', "'", ":", "_", "%5F", "\\u005f", "ob", "sk", "svc", "abcdefghijkl",
             "\u00e9", "\t", "&"]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join),
    st.sampled_from(["GET", "POST", "TOKEN"]),
)
def test_the_direct_line_is_the_generic_line_for_any_path(path, method):
    for formatter in FORMATTERS:
        created = 1_796_000_000.5
        line = formatter.access_line(logging.INFO, "rid-1", method, path, 200, 0.5, created)
        assert _is_the_generic_line(
            line, formatter, logging.INFO, "rid-1", method, path, 200, created
        )


@pytest.fixture
def access_at_debug() -> Iterator[None]:
    """`buddy.access` at DEBUG: the lookup's lines (DEBUG, quiet at INFO) are written too."""
    previous = access_logger.level
    access_logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        access_logger.setLevel(previous)


def _access_lines(lines: list[str]) -> list[dict[str, object]]:
    records = [json.loads(line) for line in lines]
    return [r for r in records if r["logger"] == "buddy.access"]


def test_a_v1_request_writes_its_access_line_with_its_id_and_never_the_key(
    upstream,
    deploy,
    log_lines,  # noqa: F811 - the fixture imported above
):
    deployed = deploy(f"{upstream.url}/ok")
    # Cached beforehand: the gateway's lookup is then a hit, no ORM in its thread pool.
    assert key_lookup(authorization=f"Bearer {deployed.secret}", model="gemma4:26b").ok

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=gateway_application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            try:
                return [
                    await client.post(
                        f"/v1/chat/completions?api_key={deployed.secret}",
                        json=CHAT,
                        headers={"Authorization": f"Bearer {deployed.secret}"},
                    ),
                    await client.get(f"/v1/models/{deployed.secret}?key={deployed.secret}"),
                ]
            finally:  # this event loop's pooled connections
                await gateway_upstream.close_session()
                await lookup_cache.aclose()

    answered, not_found = asyncio.run(calls())
    assert (answered.status_code, not_found.status_code) == (200, 404)
    text = "\n".join(log_lines())
    assert deployed.secret not in text and deployed.secret[:20] not in text
    access = _access_lines(log_lines())
    assert [(r["request_id"], r["status"]) for r in access] == [
        (answered.headers["x-request-id"], 200),
        (not_found.headers["x-request-id"], 404),
    ]
    assert access[0]["path"] == "/v1/chat/completions" and access[0]["method"] == "POST"
    assert access[1]["path"] == "/v1/models/ob_sk_[REDACTED]"
    assert isinstance(access[0]["duration_ms"], float) and access[0]["time"]


@pytest.mark.django_db
def test_a_lookup_writes_its_access_line_with_its_id_and_never_the_key(
    live_key,
    log_lines,  # noqa: F811 - the fixture imported above
    access_at_debug,
):
    _key, plaintext = live_key
    _token, service_secret = service_token_create(name="edge", role="proxy")
    response = Client().post(
        f"/internal/v1/auth/lookup?api_key={plaintext}",
        data=json.dumps({"authorization": f"Bearer {plaintext}", "model": "gemma4:26b"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {service_secret}",
        HTTP_X_REQUEST_ID="proxy-7.1",
    )
    assert response.status_code == 200 and response["X-Request-ID"] == "proxy-7.1"
    text = "\n".join(log_lines())
    assert plaintext not in text and plaintext[:20] not in text and service_secret not in text
    (line,) = _access_lines(log_lines())
    assert line["request_id"] == "proxy-7.1" and line["level"] == "DEBUG"
    assert (line["method"], line["path"], line["status"]) == (
        "POST",
        "/internal/v1/auth/lookup",
        200,
    )


def test_any_other_handler_gets_the_usual_record(log_lines):  # noqa: F811
    """A handler that is not buddy's (here a capture with its own formatter) still gets a
    `LogRecord` with the fields as `extra`, beside the console's direct line."""
    captured = io.StringIO()
    other = logging.StreamHandler(captured)
    other.setFormatter(logging.Formatter("%(levelname)s %(message)s %(status)s %(path)s"))
    access_logger.addHandler(other)
    token = bind_request_id("rid-9")[1]
    try:
        log_access("GET", f"/v1/models/{KEY}", 404, time.perf_counter())
    finally:
        unbind_request_id(token)
        access_logger.removeHandler(other)
    assert captured.getvalue().startswith("INFO GET /v1/models/")
    (line,) = _access_lines(log_lines())
    assert line["request_id"] == "rid-9" and line["path"] == "/v1/models/ob_sk_[REDACTED]"
