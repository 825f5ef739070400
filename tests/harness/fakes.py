"""Fake servers the tests start in a thread of their own process, on loopback: the orchestrator
the `http` provisioner calls, and an OpenAI-compatible model server for the gateway.

Ports come from `tests.harness.ports` (BUDDY_TEST_PORTS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn

from tests.harness.ports import bind_free, bound_socket
from tests.harness.wait import wait_until

# The credential buddy's gateway sends upstream, and how long it waits for an upstream's answer:
# short, so that the timeout test is quick; every other upstream answers well within it.
UPSTREAM_API_KEY = "upstream-credential-for-tests"
UPSTREAM_READ_TIMEOUT = 3.0


# --- the fake orchestrator ------------------------------------------------------------------------


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


# --- the fake model server ------------------------------------------------------------------------


STREAM_PROMPT_TOKENS = 5


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
    - `/drip`: streams a chunk every 50 ms until its client goes away (sets `disconnected`);
    - `/fail`: 500; `/refuses`: 400 with an OpenAI error body; `/unauthorized`: 401;
    - `/nullusage`: like `/ok`, but once asked for usage it marks every chunk `"usage": null`
      (as OpenAI does).

    Streams honour `stream_options.include_usage` as OpenAI and vLLM do: a last chunk with empty
    `choices` and `usage` (`STREAM_PROMPT_TOKENS`, and one completion token per word).
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
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            chunk: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if include_usage and mode == "nullusage":
                chunk["usage"] = None
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
        if mode == "drip":
            await self._drip(send, receive, event)
            return
        if mode == "gated":
            await asyncio.to_thread(self.release.wait, 30)
        words = self.reply(body).split(" ")
        for word in words:
            await send(event({"content": word + " "}))
        await send(event({}, "stop"))
        if include_usage:
            usage = {
                "prompt_tokens": STREAM_PROMPT_TOKENS,
                "completion_tokens": len(words),
                "total_tokens": STREAM_PROMPT_TOKENS + len(words),
            }
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [],
                "usage": usage,
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _drip(self, send: Any, receive: Any, event: Any) -> None:
        """A chunk every 50 ms for as long as the client listens (at most 60 s)."""
        gone = asyncio.ensure_future(self._until_disconnect(receive))
        try:
            for _ in range(1200):
                await send(event({"content": "drip "}))
                done, _ = await asyncio.wait({gone}, timeout=0.05)
                if done:
                    return
        finally:
            gone.cancel()

    async def _until_disconnect(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()


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
