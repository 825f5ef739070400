"""Structured logs: one JSON object per line, the request id on each, and no secret ever."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from buddy.http.request_id import HEADER
from buddy.ops.logging import REDACTED, TextFormatter, redact

KEY = "ob_sk_" + "A1b2C3d4E5f6" + "G7h8" * 9  # the shape of a key; never a real one
SERVICE_TOKEN = "ob_svc_" + "Zx9_-" * 8
CONSOLE_TOKEN = "9f" * 32


@pytest.fixture
def log_lines():
    """The lines the configured console handler writes (JSON outside DEBUG), as a list."""
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield lambda: [line for line in buffer.getvalue().splitlines() if line]
    finally:
        handler.setStream(previous)


def _secrets_in(text: str) -> list[str]:
    return [s for s in (KEY, KEY[:20], SERVICE_TOKEN, CONSOLE_TOKEN) if s in text]


def test_a_secret_logged_by_mistake_is_redacted_from_message_args_extra_and_traceback(log_lines):
    log = logging.getLogger("buddy.test")
    log.warning("presented %s", KEY)
    log.warning("headers: %r", {"Authorization": f"Bearer {KEY}", "X": f"Token {CONSOLE_TOKEN}"})
    log.error(f"proxy token {SERVICE_TOKEN} refused", extra={"auth": f"bearer {SERVICE_TOKEN}"})
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        log.exception("lookup failed")

    lines = log_lines()
    assert len(lines) == 4
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for line in lines:
        assert not _secrets_in(line), line
        assert REDACTED in line
    assert records[0]["message"] == f"presented ob_sk_{REDACTED}"
    assert "ValueError: bad key ob_sk_[REDACTED]" in records[3]["exc_info"]
    assert {"time", "level", "logger", "message", "request_id"} <= records[0].keys()


def test_text_format_is_redacted_too():
    formatter = TextFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (KEY,), None)
    assert not _secrets_in(formatter.format(record))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token expired", "token expired"),  # prose stays
        ("Bearer", "Bearer"),
        ("ob_sk_short", "ob_sk_short"),
        (f"Authorization: Basic {'dXNlcjpwYXNz'}", f"Authorization: Basic {REDACTED}"),
        (f"{KEY}{KEY}", f"ob_sk_{REDACTED}"),
    ],
)
def test_redaction_leaves_prose_alone(text, expected):
    assert redact(text) == expected


@pytest.mark.django_db
def test_each_request_gets_an_id_echoed_in_the_response_and_on_its_log_lines(client, log_lines):
    response = client.get("/no/such/page")
    request_id = response[HEADER]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    records = [json.loads(line) for line in log_lines()]
    ours = [r for r in records if r["request_id"] == request_id]
    access = [r for r in ours if r["logger"] == "buddy.access"]
    assert len(access) == 1
    assert access[0]["status"] == 404 and access[0]["path"] == "/no/such/page"
    # Django's own line about the 404 is logged after the middleware: it carries the id too.
    assert any(r["logger"] == "django.request" for r in ours)
    assert all("request" not in r for r in records)


@pytest.mark.django_db
def test_a_well_formed_incoming_request_id_is_kept_and_a_bad_one_replaced(client):
    kept = client.get("/healthz", headers={HEADER: "edge-7f3a.42:1"})
    assert kept[HEADER] == "edge-7f3a.42:1"
    for bad in ["has space", "x" * 129, '{"json":1}', f"Bearer {KEY}"]:
        replaced = client.get("/healthz", headers={HEADER: bad})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced[HEADER]), bad


@pytest.mark.django_db
def test_a_key_in_a_query_string_never_reaches_the_logs(client, log_lines):
    client.get(f"/no/such/page?api_key={KEY}", headers={"authorization": f"Bearer {KEY}"})
    text = "\n".join(log_lines())
    assert text and not _secrets_in(text)


# --- the redaction table (issue 13, item 10) ------------------------------------------------------

KNOX = "ob_con_" + "3a" * 32  # the shape of a console token
KNOX_PLAIN = "c0ffee" * 10  # a console token of before the prefix


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        # An auth scheme right behind an escaped newline (the repr of an exception's text).
        (repr(f"upstream said:\nToken {KNOX_PLAIN}"), KNOX_PLAIN),
        (repr(f"headers were\nAuthorization: Token {KNOX_PLAIN}"), KNOX_PLAIN),
        (repr(f"x\nToken {KNOX_PLAIN}"), KNOX_PLAIN),
        (repr(f"x\tBearer {KEY}"), KEY[6:]),
        (f"ValueError('bad\\\\nBearer {SERVICE_TOKEN}')", SERVICE_TOKEN[7:]),
        # Secret-named fields of JSON, reprs, JSON inside JSON, query strings and kwargs.
        (f'{{"token": "{KNOX_PLAIN}"}}', KNOX_PLAIN),
        (f"{{'token': '{KNOX_PLAIN}'}}", KNOX_PLAIN),
        (f'body={{"username": "ann", "password": "{KNOX_PLAIN}"}}', KNOX_PLAIN),
        (json.dumps({"message": json.dumps({"secret": KNOX_PLAIN})}), KNOX_PLAIN),
        (f'{{"access_token":"{KNOX_PLAIN}","token_type":"bearer"}}', KNOX_PLAIN),
        (f"GET /callback?token={KNOX_PLAIN}&x=1", KNOX_PLAIN),
        (f"token={KNOX_PLAIN}", KNOX_PLAIN),
        (f"retry(api_key={KNOX_PLAIN}, n=2)", KNOX_PLAIN),
        (f"token = {KNOX_PLAIN}", KNOX_PLAIN),
        # Prefixed credentials with their `_` escaped (URL, JSON/Python, markdown).
        (KEY.replace("_", "%5F"), KEY[6:]),
        (KEY.replace("_", "%5f"), KEY[6:]),
        (KEY.replace("_", "\\u005f"), KEY[6:]),
        (KEY.replace("_", "\\x5f"), KEY[6:]),
        (KEY.replace("_", "\\_"), KEY[6:]),
        (SERVICE_TOKEN.replace("ob_svc_", "ob%5Fsvc%5F"), SERVICE_TOKEN[7:]),
        (SERVICE_TOKEN.replace("ob_svc_", "ob\\u005fsvc\\u005f"), SERVICE_TOKEN[7:]),
        (f"console token {KNOX} refused", KNOX[7:]),
        (KNOX.replace("_", "%5F"), KNOX[7:]),
        (repr(f"a\n{KNOX}"), KNOX[7:]),
        (f"Bearer {KEY.replace('_', '%5F')}", KEY[6:]),
    ],
)
def test_redaction_table(line, secret):
    redacted = redact(line)
    assert secret not in redacted, redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "line",
    [
        '{"usage": {"prompt_tokens": 12, "max_tokens": 200}}',
        "max_tokens=200 temperature=0.2",
        '{"secret_available": true, "token_type": "bearer"}',
        "the token expired",
        "3 tokens left",
    ],
)
def test_redaction_table_leaves_these_alone(line):
    assert redact(line) == line


def _exception_record(message: str) -> logging.LogRecord:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        import sys

        return logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())


def test_the_filter_redacts_exc_text_and_the_traceback_for_any_handler():
    from buddy.ops.logging import RedactSecretsFilter

    # A record whose traceback is formatted by a handler that is not ours (a plain Formatter).
    record = _exception_record(f"upstream refused\nToken {KNOX_PLAIN} and {KEY}")
    assert RedactSecretsFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "RuntimeError: upstream refused" in text
    assert KNOX_PLAIN not in text and KEY not in text and KEY[6:] not in text
    assert record.exc_text and KNOX_PLAIN not in record.exc_text

    # A record that already carries a formatted traceback (`exc_text`), as another handler or a
    # Celery worker leaves it.
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    record.exc_text = f'Traceback...\nValueError: {{"token": "{KNOX_PLAIN}"}}'
    record.stack_info = f"Stack (most recent call last):\n  secret={KNOX_PLAIN}"
    RedactSecretsFilter().filter(record)
    assert KNOX_PLAIN not in record.exc_text and KNOX_PLAIN not in record.stack_info
    assert KNOX_PLAIN not in logging.Formatter().format(record)
