"""The embedded default (`make run`: no Redis server, SQLite, the scheduler thread) meters usage
through the same code: a journey over HTTP with the `openai` SDK and the built-in model server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai

from tests.harness.ports import free_port
from tests.harness.processes import ROOT, Process, _answers_healthz, _server_argv, subprocess_env
from tests.harness.wait import wait_until

MESSAGES = [{"role": "user", "content": "hello buddy"}]  # the local model: 2 tokens in, 2 out


def test_make_runs_embedded_default_meters_completions_and_streams(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = subprocess_env(
        DEBUG="true",
        REDIS_URL="",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        BUDDY_PROVISIONER="local",
        BUDDY_LOCAL_BOOT_SECONDS="0.1",
        BUDDY_LOCAL_ENDPOINT_URL=f"{url}/local-model",
        BUDDY_USAGE_LOCAL_FLUSH_SECONDS="1",
        BUDDY_USAGE_FLUSH_SECONDS="2",
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True, timeout=180)
    create = (
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_user('owner', password='a-long-password-1')"
    )
    subprocess.run([*manage, "shell", "-c", create], env=env, cwd=ROOT, check=True, timeout=60)
    server = Process(_server_argv("uvicorn", port, 1), env, tmp_path / "buddy.log")
    server.start()
    try:
        server.wait_until_up(lambda: _answers_healthz(url), timeout=90, what="embedded buddy")
        api = httpx.Client(base_url=f"{url}/api/v1", timeout=30)
        token = api.post("/auth/token", json={"username": "owner", "password": "a-long-password-1"})
        api.headers["Authorization"] = f"Token {token.json()['token']}"
        deployment = api.post("/deployments", json={"template": "gemma4-26b", "pack_hours": 1})
        dep_id = deployment.json()["id"]
        wait_until(
            lambda: api.get(f"/deployments/{dep_id}").json()["status"] == "ready",
            timeout=60,
            what="the local instance to be ready",
        )
        key_id = wait_until(
            lambda: api.get(f"/keys?deployment={dep_id}").json()["results"],
            timeout=30,
            what="the default key",
        )[0]["id"]
        secret = api.post(f"/keys/{key_id}/reveal").json()["secret"]

        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0, timeout=30)
        sdk.chat.completions.create(model="gemma4:26b", messages=MESSAGES)
        plain = list(
            sdk.chat.completions.create(model="gemma4:26b", messages=MESSAGES, stream=True)
        )
        assert all(chunk.choices and chunk.usage is None for chunk in plain)
        asked = list(
            sdk.chat.completions.create(
                model="gemma4:26b", messages=MESSAGES, stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
        assert asked[-1].choices == [] and asked[-1].usage is not None
        assert asked[-1].usage.total_tokens == 4

        expected = {"requests": 3, "prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12}
        wait_until(
            lambda: api.get(f"/deployments/{dep_id}/usage").json()["totals"] == expected,
            timeout=60,
            interval=0.5,
            what="the embedded default to flush usage",
        )
        assert api.get(f"/keys/{key_id}").json()["usage_24h"] == {"requests": 3, "total_tokens": 12}
    finally:
        server.stop()
