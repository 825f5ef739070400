"""The gateway's HTTP/1.1 client of model servers: keep-alive connections pooled per event loop and
origin, answers parsed by httptools (llhttp, the parser of Node.js), bytes moved by the loop's own
transports.

Why not aiohttp's `ClientSession`: on this path every chat request makes one upstream call, and
buddy's app measured in process (parts stubbed out, CPU time) put a session's request machinery
(tracing, cookies, redirects, proxies, payload and writer objects) at ~100 us of CPU per call,
more than all of buddy's own work on a request; this client costs ~25 us (README "Gateway
throughput"). It does only what the gateway asks of an upstream: one `POST` of a body it already
holds, an answer read whole (`read`), in pieces as they arrive (`iter_any`, for streams), or
abandoned (`close`).

- Connections are reused while the upstream keeps them alive, at most `keepalive` seconds idle;
  one that the upstream closed while idle leaves the pool when its close arrives, and a request
  whose reused connection turns out closed before any byte of its answer is sent again once on a
  new connection: the race of a keep-alive close (the upstream closed as the request went out).
  RFC 9112 (9.3.1) leaves retrying a non-idempotent request to what the client knows of it: a
  chat completion changes nothing on a model server, and the gateway counts only the answer it
  relays, so a second send costs at most a generation nobody reads. A new connection is never
  retried, nor one on which any of an answer came back.
- Timeouts: `connect` bounds making a connection (TLS included); `read` bounds each wait for the
  next piece of the answer (its head, then each part of its body), never the whole answer.
- An answer whose body is still arriving is buffered up to `_HIGH_WATER` bytes, then the socket
  is paused until the reader catches up: a slow client slows its upstream, it never fills memory.
- Failures raise `TransportError` (no connection, the answer cut off, not HTTP) or `TimeoutError`
  (`ConnectTimeout`, `ReadTimeout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import weakref
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

# Buffered body bytes of one answer above which its socket is paused (resumed once the reader
# has taken what is buffered).
_HIGH_WATER = 256 * 1024
# Idle connections kept per origin (more are closed when released).
_MAX_IDLE = 256
_USER_AGENT = b"buddy-gateway"


class TransportError(Exception):
    """Talking to the upstream failed: no connection, or no (complete) HTTP answer on it."""


class ConnectError(TransportError):
    """No connection could be made."""


class Disconnected(TransportError):
    """The connection ended before the answer did."""

    received_any = False  # whether any byte of the answer had come back


class BadResponse(TransportError):
    """What came back is not an HTTP/1.1 answer."""


class ConnectTimeout(TimeoutError):
    """No connection within the connect timeout."""


class ReadTimeout(TimeoutError):
    """No next piece of the answer within the read timeout."""


class Headers:
    """An answer's headers, looked up by name in any case (the first of repeated ones)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[bytes, bytes]]) -> None:
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self._items:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default


class Origin:
    """Where connections go: scheme, host and port (with the TLS context for https)."""

    __slots__ = ("host", "port", "ssl")

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.host, self.port, self.ssl = host, port, tls


class Target:
    """A URL as this client posts to it: its origin's key and the request head up to (not
    including) the Content-Length header, made once per URL and headers."""

    __slots__ = ("head", "key", "origin")

    def __init__(self, origin: Origin, key: tuple[str, str, int], head: bytes) -> None:
        self.origin, self.key, self.head = origin, key, head


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


@functools.lru_cache(maxsize=1024)
def target(url: str, headers: tuple[tuple[str, str], ...]) -> Target:
    """The `Target` of a `POST` to `url` with `headers` (ValueError for a URL this client cannot
    call: only http and https)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != (443 if tls else 80):
        shown = f"{shown}:{parts.port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {shown}", f"User-Agent: {_USER_AGENT.decode()}"]
    lines += [f"{name}: {value}" for name, value in headers]
    head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    origin = Origin(host, port, _tls_context() if tls else None)
    return Target(origin, (parts.scheme, host, port), head)


class Response:
    """An upstream's answer: `status` and `headers` once its head has arrived, its body by `read`
    or `iter_any`. `close()` when done with it (`read` to the end returns the connection to its
    pool by itself); closing an answer whose body is still arriving closes its connection."""

    def __init__(self, connection: _Connection, read_timeout: float) -> None:
        self._connection: _Connection | None = connection
        self._read_timeout = read_timeout
        self.status = 0
        self.headers = Headers([])
        self._header_items: list[tuple[bytes, bytes]] = []
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._head_done = False
        self._complete = False
        self._error: BaseException | None = None
        self._closed = False
        self.received_any = False  # a byte of the answer arrived (a retry would repeat a call)
        self.until_eof = False  # a body without length or chunks: it ends with the connection

    # --- fed by the connection (the event loop's callbacks) ---

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _head(self, status: int, until_eof: bool) -> None:
        self.status = status
        self.headers = Headers(self._header_items)
        self.until_eof = until_eof
        self._head_done = True
        self._wake()

    def _body(self, chunk: bytes) -> None:
        if self._closed:
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _HIGH_WATER and self._connection is not None:
            self._connection.pause()
        self._wake()

    def _end(self) -> None:
        self._complete = True
        self._connection = None
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._complete:
            self._error = exc
            self._connection = None
        self._wake()

    # --- the reader's side ---

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self._read_timeout, self._time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout("the upstream sent nothing within the read timeout"))

    async def _wait_head(self) -> None:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._connection is not None:
            self._connection.resume()
        return data

    async def read(self, limit: int = -1) -> bytes:
        """The body to its end (or its first `limit` bytes and no more); raises if the answer is
        cut off before (`limit` reached is not an error)."""
        parts: list[bytes] = []
        size = 0
        while True:
            if self._chunks:
                data = self._take()
                parts.append(data)
                size += len(data)
                if 0 <= limit <= size:
                    return b"".join(parts)[:limit]
            elif self._complete or self._closed:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            elif self._error is not None:
                raise self._error
            else:
                await self._wait()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body in the pieces it arrives in (what has arrived since the last one); ends with
        the answer, or early, without error, once `close()` is called."""
        while True:
            if self._chunks:
                yield self._take()
            elif self._complete or self._closed:
                return
            elif self._error is not None:
                raise self._error
            else:
                await self._wait()

    def close(self) -> None:
        """Done with the answer: an answer still arriving closes its connection (a pending read
        or iteration ends); a complete one is already back in its pool."""
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        connection, self._connection = self._connection, None
        if connection is not None and not self._complete:
            connection.abandon()
        self._wake()

    release = close


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an origin, one request at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.idle_since = 0.0
        self.paused = False
        self.open = False
        self.interim = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: not an answer this client can use
            self.abandon()
            return
        response.received_any = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.response = None
            response._fail(BadResponse(f"the upstream's answer is not HTTP/1.1 ({exc})"))
            self.abandon()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.transport = None
        response, self.response = self.response, None
        if response is None:  # an idle connection the upstream closed
            self.pool.forget(self)
            return
        if response._head_done and response.until_eof and exc is None:
            response._end()  # its body was "until the connection closes"
        else:
            response._fail(Disconnected("the upstream closed the connection mid-answer"))

    # --- httptools' callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response._header_items.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self.parser.get_status_code()
        if status < 200:  # interim (`100 Continue`, `103 Early Hints`): the real answer follows
            self.interim = True
            response._header_items.clear()
            return
        until_eof = not self.parser.should_keep_alive() and not any(
            name.lower() in (b"content-length", b"transfer-encoding")
            for name, _ in response._header_items
        )
        response._head(status, until_eof and status not in (204, 304))

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        response, self.response = self.response, None
        if response is None:
            return
        keep = self.parser.should_keep_alive()
        response._end()
        if keep:
            self.pool.release(self)
        else:
            self.abandon()

    # --- the client's side ---

    def send(self, response: Response, data: bytes) -> None:
        assert self.transport is not None
        self.response = response
        self.transport.write(data)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def abandon(self) -> None:
        """Close the connection (its answer, if any, was not read to the end)."""
        self.open = False
        self.response = None
        if self.transport is not None:
            self.transport.close()


class Pool:
    """The keep-alive connections of one event loop, by origin; one idle longer than `keepalive`
    seconds is closed (checked every `keepalive` seconds while any is idle)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keepalive: float) -> None:
        self.loop = loop
        self.keepalive = keepalive
        self.idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self.sweep: asyncio.TimerHandle | None = None

    def _reusable(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self.idle.get(key)
        if not idle:
            return None
        oldest_allowed = self.loop.time() - self.keepalive
        while idle:
            connection = idle.pop()
            if connection.open and connection.idle_since >= oldest_allowed:
                return connection
            connection.abandon()
        return None

    def release(self, connection: _Connection) -> None:
        if not connection.open:
            return
        connection.resume()
        idle = self.idle.get(connection.key)
        if idle is None:
            idle = self.idle[connection.key] = deque()
        if len(idle) >= _MAX_IDLE:
            connection.abandon()
            return
        connection.idle_since = self.loop.time()
        idle.append(connection)
        if self.sweep is None:
            self.sweep = self.loop.call_later(self.keepalive, self._sweep)

    def forget(self, connection: _Connection) -> None:
        """An idle connection closed by its upstream leaves the pool."""
        idle = self.idle.get(connection.key)
        if idle is not None:
            with contextlib.suppress(ValueError):  # already taken out
                idle.remove(connection)
            if not idle:
                del self.idle[connection.key]

    def _sweep(self) -> None:
        self.sweep = None
        oldest_allowed = self.loop.time() - self.keepalive
        for key, idle in list(self.idle.items()):
            while idle and (not idle[0].open or idle[0].idle_since < oldest_allowed):
                idle.popleft().abandon()  # the least recently used are on the left
            if not idle:
                del self.idle[key]
        if self.idle:
            self.sweep = self.loop.call_later(self.keepalive, self._sweep)

    async def _connect(self, target: Target, timeout: float) -> _Connection:
        origin = target.origin
        try:
            async with asyncio.timeout(timeout):
                _, connection = await self.loop.create_connection(
                    lambda: _Connection(self, target.key),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None,
                )
        except TimeoutError as exc:
            raise ConnectTimeout(f"no connection to the upstream within {timeout:g} s") from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"no connection to the upstream ({type(exc).__name__})") from exc
        return connection

    async def post(
        self, target: Target, body: bytes, *, connect_timeout: float, read_timeout: float
    ) -> Response:
        """Send the request and wait for its answer's head (status and headers)."""
        data = b"%sContent-Length: %d\r\n\r\n%s" % (target.head, len(body), body)
        reused = self._reusable(target.key)
        connection = reused or await self._connect(target, connect_timeout)
        try:
            return await self._exchange(connection, data, read_timeout)
        except Disconnected as exc:
            if reused is None or exc.received_any:
                raise
        # The upstream closed the reused connection as this request went out (not a byte of an
        # answer came back): once more, on a new connection (see the module's docstring).
        connection = await self._connect(target, connect_timeout)
        return await self._exchange(connection, data, read_timeout)

    @staticmethod
    async def _exchange(connection: _Connection, data: bytes, read_timeout: float) -> Response:
        response = Response(connection, read_timeout)
        connection.send(response, data)
        try:
            await response._wait_head()
        except Disconnected as exc:
            exc.received_any = response.received_any
            response.close()
            raise
        except BaseException:
            response.close()
            raise
        return response

    def close(self) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
            self.sweep = None
        for idle in list(self.idle.values()):
            while idle:
                idle.pop().abandon()
        self.idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


def pool(keepalive: float = 30.0) -> Pool:
    """This event loop's pool (made on first use; a pool's connections belong to its loop)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = Pool(loop, keepalive)
    return found


def close_pool() -> None:
    """Close this event loop's idle connections (for loops that end with their request)."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        found.close()
