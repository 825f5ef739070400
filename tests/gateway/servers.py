"""Real servers for the gateway's tests: buddy under uvicorn in a subprocess (the way it is
deployed, on the test database) and a scriptable fake model server in a thread of the test process.

Ports come from `tests.ports` (BUDDY_TEST_PORTS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from django.conf import settings
from django.db import connection

from tests.ports import bound_socket, free_port
from tests.servers import wait_until

__all__ = ["bound_socket", "free_port", "wait_until"]

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_API_KEY = "upstream-credential-for-tests"
# Short, so that the timeout test is quick; every other upstream answers well within it.
UPSTREAM_READ_TIMEOUT = 3.0


# --- the fake model server ---------------------------------------------------------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    """An OpenAI-compatible model server whose behaviour is chosen by the endpoint's path:

    - `/ok`: echoes the last user message (`upstream says: ...`), with `usage`, streamed if asked;
    - `/gated`: streams its first chunk, then waits until the test sets `release`, then the rest;
    - `/silent`: answers nothing until `release` (the gateway's read timeout fires first);
    - `/breaks`: streams one chunk, then drops the connection;
    - `/hangs`: streams one chunk, then waits until its client goes away (sets `disconnected`);
    - `/fail`: 500; `/refuses`: 400 with an OpenAI error body; `/unauthorized`: 401.
    """

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.requests.clear()
        self.release.clear()
        self.finished.clear()
        self.disconnected.clear()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw or b"{}")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Recorded(scope["path"], headers, body))
        mode = scope["path"].split("/")[1]
        if scope["path"] != f"/{mode}/v1/chat/completions":
            await self._json(send, 404, {"error": {"message": "no such route"}})
        elif mode == "fail":
            await self._json(send, 500, {"error": {"message": "model crashed"}})
        elif mode == "refuses":
            await self._json(send, 400, {"error": {"message": "context length exceeded"}})
        elif mode == "unauthorized":
            await self._json(send, 401, {"error": {"message": "bad upstream credential"}})
        elif mode == "silent":
            await asyncio.to_thread(self.release.wait, 30)
            await self._json(send, 200, self._completion(body))
        elif body.get("stream"):
            await self._stream(send, receive, body, mode)
        else:
            await self._json(send, 200, self._completion(body))
        self.finished.set()

    @staticmethod
    def reply(body: dict[str, Any]) -> str:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        return f"upstream says: {users[-1] if users else ''}"

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.reply(body)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }

    @staticmethod
    async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    async def _stream(self, send: Any, receive: Any, body: dict[str, Any], mode: str) -> None:
        def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            return {"type": "http.response.body", "body": data, "more_body": True}

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send(event({"role": "assistant", "content": ""}))
        if mode == "breaks":
            raise RuntimeError("the model server falls over mid-stream")
        if mode == "hangs":
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
            return
        if mode == "gated":
            await asyncio.to_thread(self.release.wait, 30)
        for word in self.reply(body).split(" "):
            await send(event({"content": word + " "}))
        await send(event({}, "stop"))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a daemon thread; yields its base URL."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20, what="the fake upstream to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- buddy itself --------------------------------------------------------------------------------


def database_url_of_tests() -> str:
    """The URL of the database pytest-django created, for a server in another process."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@contextlib.contextmanager
def buddy_server(**extra_env: str) -> Iterator[str]:
    """buddy served by uvicorn on buddy.asgi in a subprocess, on the test database and Redis."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "BUDDY_PROVISIONER": "none",
        "BUDDY_LOCAL_MODEL_ENABLED": "true",
        "BUDDY_UPSTREAM_API_KEY": UPSTREAM_API_KEY,
        "BUDDY_UPSTREAM_READ_TIMEOUT_SECONDS": str(UPSTREAM_READ_TIMEOUT),
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    log = tempfile.NamedTemporaryFile(prefix="buddy-gateway-", suffix=".log", delete=False)  # noqa: SIM115 - open for the life of the server
    for _attempt in range(3):
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "buddy.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"

        def answers(url: str = url, process: subprocess.Popen = process) -> bool:
            if process.poll() is not None:
                return True  # exited: stop waiting, try another port
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=60, what="buddy to start")
        if process.poll() is None:
            break
    else:
        raise RuntimeError(f"buddy did not start; see {log.name}")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        os.unlink(log.name)
