"""What `buddy/settings.py` makes of the environment, read in a fresh process each time (settings
are evaluated once per process, so the test's own cannot show another environment's defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

NAMES = [
    "DEBUG",
    "ALLOWED_HOSTS",
    "BUDDY_PROVISIONER",
    "BUDDY_LOCAL_MODEL_ENABLED",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_REDIRECT_EXEMPT",
    "REST_FRAMEWORK",
]


def settings_of(**environ: str) -> dict:
    """The settings above as a process started with only `environ` (and PATH) would have them."""
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {NAMES!r}}}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "buddy.settings", **environ},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "x" * 50}


def test_outside_debug_nothing_is_provisioned_and_no_model_server_runs_unless_asked():
    found = settings_of(**PRODUCTION)
    assert found["BUDDY_PROVISIONER"] == "none"
    assert found["BUDDY_LOCAL_MODEL_ENABLED"] is False
    # Asked for the local provisioner explicitly: still no model server unless asked for too.
    assert (
        settings_of(**PRODUCTION, BUDDY_PROVISIONER="local")["BUDDY_LOCAL_MODEL_ENABLED"] is False
    )
    asked = settings_of(**PRODUCTION, BUDDY_PROVISIONER="local", BUDDY_LOCAL_MODEL_ENABLED="true")
    assert asked["BUDDY_LOCAL_MODEL_ENABLED"] is True


def test_outside_debug_the_test_clients_host_is_not_allowed():
    assert settings_of(**PRODUCTION)["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]
    assert settings_of(**PRODUCTION, ALLOWED_HOSTS="buddy.example.com")["ALLOWED_HOSTS"] == [
        "buddy.example.com"
    ]


def test_make_run_keeps_the_embedded_local_platform():
    """`make run`'s environment (DEBUG, nothing else): local provisioner, model server on, plain
    http without redirects or HSTS."""
    found = settings_of(DEBUG="true")
    assert found["BUDDY_PROVISIONER"] == "local"
    assert found["BUDDY_LOCAL_MODEL_ENABLED"] is True
    assert found["SECURE_SSL_REDIRECT"] is False
    assert found["SECURE_HSTS_SECONDS"] == 0
    assert found["SESSION_COOKIE_SECURE"] is False and found["CSRF_COOKIE_SECURE"] is False


def test_outside_debug_https_is_enforced_by_default_and_each_part_can_be_turned_off():
    found = settings_of(**PRODUCTION)
    assert found["SECURE_SSL_REDIRECT"] is True
    assert found["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert found["SESSION_COOKIE_SECURE"] is True and found["CSRF_COOKIE_SECURE"] is True
    # Probes, metrics and the machines' internal API are never redirected.
    assert set(found["SECURE_REDIRECT_EXEMPT"]) >= {r"^healthz$", r"^readyz$", r"^internal/"}
    private = settings_of(
        **PRODUCTION,
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="0",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
    )
    assert private["SECURE_SSL_REDIRECT"] is False and private["SECURE_HSTS_SECONDS"] == 0
    assert private["SESSION_COOKIE_SECURE"] is False and private["CSRF_COOKIE_SECURE"] is False


@pytest.mark.parametrize(
    ("proxies", "header"), [("0", None), ("1", ["HTTP_X_FORWARDED_PROTO", "https"])]
)
def test_x_forwarded_proto_is_believed_only_behind_a_proxy(proxies, header):
    found = settings_of(**PRODUCTION, BUDDY_NUM_PROXIES=proxies)
    assert found["SECURE_PROXY_SSL_HEADER"] == header
    assert found["REST_FRAMEWORK"]["NUM_PROXIES"] == int(proxies)


def test_https_redirect_spares_probes_and_internal_calls(client, settings):
    """The redirect as served: a browser page goes to https, a probe does not."""
    settings.SECURE_SSL_REDIRECT = True
    page = client.get("/api/docs")
    assert page.status_code == 301 and page["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200
    lookup = client.post("/internal/v1/auth/lookup", data="{}", content_type="application/json")
    assert lookup.status_code == 403  # refused for its missing token, not redirected
