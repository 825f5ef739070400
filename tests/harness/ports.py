"""TCP ports for the servers tests start (live buddy servers, fake upstreams and orchestrators,
private redis-servers, the browser driver).

`BUDDY_TEST_PORTS` ("18600-18699") keeps them within a range when several runs share a machine;
without it the OS picks free ports. A port handed out once is not handed out again in this run.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_handed_out: set[int] = set()


def _candidates() -> Iterator[int]:
    spec = os.environ.get("BUDDY_TEST_PORTS", "").strip()
    if not spec:
        yield 0
        return
    low, _, high = spec.partition("-")
    yield from (p for p in range(int(low), int(high or low) + 1) if p not in _handed_out)


def bind_free(bind: Callable[[int], T]) -> T:
    """Call `bind(port)` with candidate ports until one is not in use; port 0 lets the OS pick."""
    for port in _candidates():
        try:
            return bind(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise RuntimeError("no free port in BUDDY_TEST_PORTS")


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free port of 127.0.0.1 (held, so nobody else takes it)."""

    def bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        _handed_out.add(sock.getsockname()[1])
        return sock

    return bind_free(bind)


def free_port() -> int:
    """A port nothing listens on now (for a subprocess to bind, or as an unreachable address)."""
    sock = bound_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port
