"""Calling a WSGI application in this process, as gunicorn would (the lookup's WSGI front)."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WsgiAnswer:
    status_code: int
    headers: dict[str, str]
    content: bytes
    header_list: list[tuple[str, str]] = field(default_factory=list)

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def has_header(self, name: str) -> bool:
        return name.lower() in self.headers

    def json(self) -> Any:
        return json.loads(self.content)


def wsgi_call(
    app: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]],
    method: str,
    path: str,
    body: bytes = b"",
    *,
    host: str = "testserver",
    headers: dict[str, str] | None = None,
    content_length: str | None = None,
) -> WsgiAnswer:
    """One request: `headers` by their HTTP names (`Authorization`); the answer whole."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)) if content_length is None else content_length,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[Any] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info=None):  # type: ignore[no-untyped-def]
        started.append((status, response_headers))

    chunks = app(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, header_list = started[0]
    return WsgiAnswer(
        int(status.split(" ", 1)[0]),
        {name.lower(): value for name, value in header_list},
        content,
        header_list,
    )
