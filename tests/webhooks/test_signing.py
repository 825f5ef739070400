"""Webhook secrets and signatures, and the settings of webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
from datetime import UTC, datetime

from buddy.ops.logging import redact
from buddy.webhooks import signing


def test_a_secret_is_whsec_and_base64_of_32_random_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_the_signature_is_hmac_sha256_of_id_timestamp_body():
    secret = signing.new_secret()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = signing.signed_headers(secret=secret, msg_id="evt_1", body='{"a":1}', at=at)
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    mac = hmac.new(
        base64.b64decode(secret.removeprefix("whsec_")),
        f'evt_1.{int(at.timestamp())}.{{"a":1}}'.encode(),
        hashlib.sha256,
    ).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_webhook_secrets_are_redacted_from_log_lines():
    secret = signing.new_secret()
    for line in (f"created {secret}", f'{{"x": "{secret}"}}', secret.replace("_", "%5F")):
        assert secret.removeprefix("whsec_") not in redact(line)


def _settings_value(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={
            "DJANGO_SETTINGS_MODULE": "buddy.settings",
            "DEBUG": "true",
            "PATH": "/usr/bin:/bin",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_retry_schedule_defaults_to_the_contracts_and_can_be_overridden():
    default = _settings_value("BUDDY_WEBHOOK_RETRY_SCHEDULE")
    assert default.stdout.strip() == "(5, 300, 1800, 7200, 18000, 36000, 36000)", default.stderr
    custom = _settings_value("BUDDY_WEBHOOK_RETRY_SCHEDULE", BUDDY_WEBHOOK_RETRY_SCHEDULE="1, 2,3")
    assert custom.stdout.strip() == "(1, 2, 3)"
    bad = _settings_value("BUDDY_WEBHOOK_RETRY_SCHEDULE", BUDDY_WEBHOOK_RETRY_SCHEDULE="5,soon")
    assert bad.returncode != 0 and "BUDDY_WEBHOOK_RETRY_SCHEDULE" in bad.stderr
