"""Leak reports of GitHub's secret scanning (API.md v2, "Leaked keys (secret scanning)")."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client, override_settings

from buddy.accounts.services import service_token_create
from buddy.webhooks.models import WebhookEvent
from buddy.webhooks.services import webhook_endpoint_create
from deployments.models import DeploymentEvent
from keys import leaks, services, tokens
from keys.models import ApiKey
from tests.harness.ports import bind_free

pytestmark = pytest.mark.django_db
URL = "/internal/v1/secret-scanning"


class KeysServer:
    """GitHub's public-keys document, on loopback, counting how often it is fetched."""

    def __init__(self) -> None:
        self.private: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps({"public_keys": server.document()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = bind_free(lambda port: ThreadingHTTPServer(("127.0.0.1", port), Handler))
        self.server.daemon_threads = True
        # A path of its own: the keys are cached per URL, and a later test may get this port.
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{uuid.uuid4().hex}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_key(self) -> str:
        identifier = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        self.private[identifier] = ec.generate_private_key(ec.SECP256R1())
        return identifier

    def document(self) -> list[dict[str, Any]]:
        return [
            {
                "key_identifier": identifier,
                "key": key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode(),
                "is_current": True,
            }
            for identifier, key in self.private.items()
        ]

    def sign(self, identifier: str, body: bytes) -> str:
        der = self.private[identifier].sign(body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()


@pytest.fixture
def keys_server() -> Iterator[KeysServer]:
    server = KeysServer()
    with override_settings(BUDDY_SECRET_SCANNING_KEYS_URL=server.url):
        yield server
    server.server.shutdown()
    server.server.server_close()


def report(client: Client, body: bytes, identifier: str, signature: str):
    return client.post(
        URL,
        data=body,
        content_type="application/json",
        HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER=identifier,
        HTTP_GITHUB_PUBLIC_KEY_SIGNATURE=signature,
    )


def reports_of(*tokens_: str) -> bytes:
    return json.dumps(
        [
            {
                "token": t,
                "type": "buddy_api_key",
                "url": "https://github.com/o/r/blob/x",
                "source": "content",
            }
            for t in tokens_
        ]
    ).encode()


def lookup(plaintext: str) -> tuple[int, str]:
    _token, secret = service_token_create(name=f"edge-{uuid.uuid4().hex[:6]}", role="proxy")
    response = Client().post(
        "/internal/v1/auth/lookup",
        data=json.dumps({"authorization": f"Bearer {plaintext}"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    return response.status_code, response.json().get("error", {}).get("code", "")


def test_a_signed_report_revokes_the_key_at_once(live_key, keys_server, user):
    key, plaintext = live_key
    _endpoint, _secret = webhook_endpoint_create(
        owner_id=user.pk, url="http://127.0.0.1:9/hook", events=["key.leaked", "key.revoked"]
    )
    assert lookup(plaintext) == (200, "")  # cached now
    identifier = keys_server.add_key()
    body = reports_of(plaintext)
    response = report(Client(), body, identifier, keys_server.sign(identifier, body))
    assert response.status_code == 200, response.content
    assert response.json() == [
        {
            "token_hash": hashlib.sha256(plaintext.encode()).hexdigest(),
            "token_type": "buddy_api_key",
            "label": "true_positive",
        }
    ]
    assert lookup(plaintext) == (401, "revoked_api_key")
    key.refresh_from_db()
    assert key.revoke_reason == "leaked" and key.revoked_at is not None
    event = DeploymentEvent.objects.get(kind="key_leaked")
    assert event.detail["url"] == "https://github.com/o/r/blob/x"
    assert event.detail["key_id"] == str(key.pk)
    types = sorted(WebhookEvent.objects.values_list("type", flat=True))
    assert types == ["key.leaked", "key.revoked"]
    # Reported again: still a true positive, nothing more happens.
    response = report(Client(), body, identifier, keys_server.sign(identifier, body))
    assert response.json()[0]["label"] == "true_positive"
    assert DeploymentEvent.objects.filter(kind="key_leaked").count() == 1


@pytest.mark.parametrize("fault", ["other_key", "missing", "garbage", "unknown_id", "tampered"])
def test_a_bad_signature_changes_nothing(live_key, keys_server, fault):
    key, plaintext = live_key
    identifier = keys_server.add_key()
    other = keys_server.add_key()
    body = reports_of(plaintext)
    signature = keys_server.sign(identifier, body)
    if fault == "other_key":
        signature = keys_server.sign(other, body)
    elif fault == "missing":
        identifier = signature = ""
    elif fault == "garbage":
        signature = "not base64 at all!"
    elif fault == "unknown_id":
        identifier = "0" * 64
    elif fault == "tampered":
        body = reports_of(plaintext + "x")[:-1] + b"]"
    response = report(Client(), body, identifier, signature)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "invalid_signature"
    key.refresh_from_db()
    assert key.revoked_at is None
    assert lookup(plaintext) == (200, "")
    assert not DeploymentEvent.objects.filter(kind="key_leaked").exists()


def test_labels_say_which_tokens_are_real_keys_of_ours(live_key, ready_deployment, keys_server):
    key, plaintext = live_key
    revoked, revoked_plaintext = services.key_create(
        deployment_id=ready_deployment.pk, name="old", actor="t"
    )
    services.key_revoke(key_id=revoked.pk, actor="t")
    unknown = tokens.generate().plaintext  # well-formed, checksum right, not ours
    head = "ob_sk_" + key.public_id + "y" * 30
    wrong_secret = head + tokens.checksum(head)  # our public id, not our key
    near_miss = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")  # checksum wrong
    sent = [plaintext, revoked_plaintext, unknown, wrong_secret, near_miss, "hello"]
    identifier = keys_server.add_key()
    body = reports_of(*sent)
    response = report(Client(), body, identifier, keys_server.sign(identifier, body))
    assert response.status_code == 200
    labels = response.json()
    assert [item["label"] for item in labels] == [
        "true_positive", "true_positive", "false_positive", "false_positive", "false_positive",
        "false_positive",
    ]  # fmt: skip
    assert [item["token_hash"] for item in labels] == [
        hashlib.sha256(t.encode()).hexdigest() for t in sent
    ]
    revoked.refresh_from_db()
    assert revoked.revoke_reason == "revoked_by_owner"  # already revoked: left as it was
    assert ApiKey.objects.get(pk=key.pk).revoke_reason == "leaked"


def test_an_unknown_identifier_refetches_the_keys_but_not_more_than_once_a_minute(
    live_key, keys_server, monkeypatch
):
    _key, plaintext = live_key
    body = reports_of(plaintext)
    first = keys_server.add_key()
    assert report(Client(), body, "f" * 64, "AAAA").status_code == 401  # fetched once
    assert keys_server.fetches == 1
    for _ in range(3):  # made-up identifiers within the minute: no more fetches
        assert report(Client(), body, uuid.uuid4().hex, "AAAA").status_code == 401
    assert keys_server.fetches == 1
    # GitHub rotated its key: once the minute has passed, the new identifier is fetched.
    monkeypatch.setattr(leaks, "_REFETCH_MIN_SECONDS", 0.0)
    rotated = keys_server.add_key()
    response = report(Client(), body, rotated, keys_server.sign(rotated, body))
    assert response.status_code == 200 and keys_server.fetches == 2
    assert first in keys_server.private


def test_bodies_that_are_not_json_or_not_reports_are_refused(keys_server):
    identifier = keys_server.add_key()
    body = b"[not json"
    response = report(Client(), body, identifier, keys_server.sign(identifier, body))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    for bad in (b'{"token": "x"}', b'[{"token": 5, "type": "t"}]', b'[{"type": "t"}]'):
        response = report(Client(), bad, identifier, keys_server.sign(identifier, bad))
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "validation_error"
