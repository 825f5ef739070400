"""Real servers the tests start on loopback: a fake orchestrator (HTTP) and a private Redis.

Ports come from `tests.ports` (BUDDY_TEST_PORTS).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from tests.ports import bind_free, free_port

__all__ = ["bind_free", "free_port", "wait_until"]


def wait_until(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


# --- the fake orchestrator ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    body: Any


class FakeOrchestrator:
    """Records every POST; answers 200, or what `respond` says for a deployment id."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.respond: dict[str, int] = {}  # deployment id -> status code
        self.hang: dict[str, threading.Event] = {}  # deployment id -> released when set
        self._lock = threading.Lock()
        orchestrator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                deployment_id = body.get("deployment_id") if isinstance(body, dict) else None
                with orchestrator._lock:
                    orchestrator.received.append(Received(self.path, body))
                    status = orchestrator.respond.get(str(deployment_id), 200)
                    gate = orchestrator.hang.get(str(deployment_id))
                if gate is not None:
                    gate.wait(30)
                # A client that timed out meanwhile has hung up: nobody to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"ok": true}')

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server: ThreadingHTTPServer = bind_free(
            lambda port: ThreadingHTTPServer(("127.0.0.1", port), Handler)
        )
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/boot"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def calls_for(self, deployment_id: object, path: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if isinstance(r.body, dict)
                and r.body.get("deployment_id") == str(deployment_id)
                and (path is None or r.path == path)
            ]

    def close(self) -> None:
        for gate in self.hang.values():
            gate.set()
        self.server.shutdown()
        self.server.server_close()


# --- a private Redis --------------------------------------------------------------------------


class PrivateRedis:
    """A `redis-server` of the test's own, on its own port, that the test may stop and start."""

    def __init__(self, tmp_dir: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_dir = tmp_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.tmp_dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.is_up, timeout=20, what=f"private redis on {self.port}")

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
