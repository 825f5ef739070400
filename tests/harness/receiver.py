"""A webhook receiver on loopback (plain http: the suite runs with BUDDY_WEBHOOK_ALLOW_PRIVATE),
in a thread of the test's process: it records every request and answers what it is told to."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.harness.ports import bind_free


@dataclass(frozen=True)
class Delivered:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.raw)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> dict[str, Any]:
        """The body, once standardwebhooks has checked its signature (raises if it is wrong)."""
        return Webhook(secret).verify(self.raw, self.headers)


class Receiver:
    """Records each POST; answers the next of `statuses` (then 200), after waiting for `gate`
    if one is set (a hanging receiver), with `extra_headers`."""

    def __init__(self) -> None:
        self.requests: list[Delivered] = []
        self.statuses: list[int] = []
        self.extra_headers: dict[str, str] = {}
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        Delivered(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    gate = receiver.gate
                if gate is not None:
                    gate.wait(60)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    for name, value in receiver.extra_headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server: ThreadingHTTPServer = bind_free(
            lambda port: ThreadingHTTPServer(("127.0.0.1", port), Handler)
        )
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def received(self) -> list[Delivered]:
        with self.lock:
            return list(self.requests)

    def types(self) -> list[str]:
        return [r.body["type"] for r in self.received()]

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()
