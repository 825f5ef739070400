"""The whole console journey, with every log line at DEBUG and every SQL statement captured:
no secret (key, console token, password) appears in a log line, a stored column, Redis, or any
answer other than the one that shows it."""

import logging

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from deployments import services as deployment_services
from keys import services as key_services
from tests.factories import UserFactory

PASSWORD = "a password nobody should log 42"


@pytest.fixture
def every_logger_at_debug(caplog):
    """Root and every named logger (django's own is at INFO by default) at DEBUG."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for logger, level in levels:
        logger.setLevel(level)


def _stored_rows() -> str:
    with connection.cursor() as cursor:
        rows = []
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608
            rows.extend(row[0] for row in cursor.fetchall())
    return "\n".join(rows)


def _redis_contents() -> str:
    r = redis.Redis.from_url(settings.REDIS_URL)
    parts = []
    for key in r.scan_iter():
        kind = r.type(key)
        parts.append(repr(key))
        if kind == b"string":
            parts.append(repr(r.get(key)))
        elif kind == b"list":
            parts.extend(repr(v) for v in r.lrange(key, 0, -1))
        elif kind == b"hash":
            parts.extend(repr(v) for v in r.hgetall(key).items())
        elif kind == b"set":
            parts.extend(repr(v) for v in r.smembers(key))
        elif kind == b"zset":
            parts.extend(repr(v) for v in r.zrange(key, 0, -1))
    return "\n".join(parts)


@pytest.mark.django_db
def test_a_whole_console_journey_leaks_no_secret(
    every_logger_at_debug, django_capture_on_commit_callbacks
):
    caplog = every_logger_at_debug
    UserFactory(username="alice", password=PASSWORD)
    client = APIClient()
    answers = []  # (label, response) of every answer the console got

    def call(label, method, path, body=None):
        with django_capture_on_commit_callbacks(execute=True):
            response = getattr(client, method)(path, body, format="json")
        answers.append((label, response))
        return response

    with CaptureQueriesContext(connection) as queries:
        token = call(
            "token", "post", "/api/v1/auth/token", {"username": "alice", "password": PASSWORD}
        )
        assert token.status_code == 201
        console_token = token.json()["token"]
        client.credentials(HTTP_AUTHORIZATION=f"Token {console_token}")

        created = call(
            "deploy", "post", "/api/v1/deployments", {"template": "gemma4-26b", "pack_hours": 8}
        )
        assert created.status_code == 201 and created.json()["status"] == "pending"
        did = created.json()["id"]

        # The provisioner reports ready; the default-key task runs (no worker in tests).
        with django_capture_on_commit_callbacks(execute=True):
            deployment_services.deployment_mark_ready(
                deployment_id=did, endpoint_url="http://10.0.0.7:8000", actor="provisioner:test"
            )
            key_services.key_create_default(deployment_id=did)
        detail = call("detail", "get", f"/api/v1/deployments/{did}").json()
        assert detail["status"] == "ready" and detail["default_key_id"]

        revealed = call("reveal", "post", f"/api/v1/keys/{detail['default_key_id']}/reveal")
        assert revealed.status_code == 200
        default_secret = revealed.json()["secret"]

        new_key = call("create-key", "post", f"/api/v1/deployments/{did}/keys", {"name": "ci"})
        assert new_key.status_code == 201
        key_secret = new_key.json()["secret"]

        call("list-keys", "get", f"/api/v1/deployments/{did}/keys")
        call("all-keys", "get", "/api/v1/keys")
        revoked = call("revoke", "post", f"/api/v1/keys/{new_key.json()['id']}/revoke")
        assert revoked.json()["status"] == "revoked"
        assert (
            call(
                "reveal-again", "post", f"/api/v1/keys/{detail['default_key_id']}/reveal"
            ).status_code
            == 410
        )

        stopped = call("stop", "post", f"/api/v1/deployments/{did}/stop")
        assert stopped.status_code == 202 and stopped.json()["status"] == "stopped"
        # What the revocation task does once a worker picks it up.
        with django_capture_on_commit_callbacks(execute=True):
            key_services.key_revoke_all_for_deployments(
                deployment_ids=[did], actor="system:revocation"
            )
        keys = call("keys-after-stop", "get", f"/api/v1/keys?deployment={did}").json()
        assert {k["status"] for k in keys["results"]} == {"revoked"}
        call("events", "get", f"/api/v1/deployments/{did}/events")

    secrets = {
        "default key": default_secret,
        "created key": key_secret,
        "console token": console_token,
        "password": PASSWORD,
    }
    assert default_secret.startswith("ob_sk_") and key_secret.startswith("ob_sk_")

    logged = caplog.text + "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert any(r.name == "django.db.backends" for r in caplog.records), "SQL was not logged"
    sql = "\n".join(q["sql"] for q in queries.captured_queries)
    stored = _stored_rows()
    in_redis = _redis_contents()
    for name, secret in secrets.items():
        hexed = secret.encode().hex()
        assert secret not in logged, f"{name} in a log line"
        assert secret not in sql and hexed not in sql, f"{name} in an SQL statement"
        assert secret not in stored and hexed not in stored, f"{name} stored in clear"
        assert secret not in in_redis, f"{name} in Redis"

    shown_in = {"token": "console token", "reveal": "default key", "create-key": "created key"}
    for label, response in answers:
        body = response.content.decode()
        for name, secret in secrets.items():
            if shown_in.get(label) == name:
                assert secret in body
                assert response["Cache-Control"] == "no-store"
            else:
                assert secret not in body, f"{name} in the answer of {label}"
