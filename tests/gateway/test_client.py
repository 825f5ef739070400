"""The gateway's upstream client (`gateway.client`) against real sockets: servers written here at
the byte level, so each test controls exactly what the upstream sends and when it closes."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import client

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
HEADERS = (("Content-Type", "application/json"),)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """A TCP server on loopback; `connections` counts the connections it accepted, `requests` the
    request heads it read."""

    handler: Handler
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if tls else 'http'}://localhost:{port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        self.requests.append(head)
        return body


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return OK_HEAD + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
    while True:
        body = await s.read_request(reader)
        writer.write(answer(b'{"echo": ' + body + b"}"))
        await writer.drain()


async def post(
    url: str, body: bytes = b'{"n": 1}', *, read_timeout: float = 5.0
) -> client.Response:
    return await client.pool().post(
        client.target(url, HEADERS), body, connect_timeout=5.0, read_timeout=read_timeout
    )


def run(coro: Awaitable[None]) -> None:
    async def main() -> None:
        try:
            await coro
        finally:
            client.close_pool()

    asyncio.run(main())


def test_sequential_requests_share_one_kept_alive_connection() -> None:
    async def scenario() -> None:
        server = Server(keep_alive)
        url = await server.start()
        for n in range(5):
            response = await post(url, b'{"n": %d}' % n)
            assert response.status == 200
            assert response.headers.get("content-type") == "application/json"
            assert await response.read() == b'{"echo": {"n": %d}}' % n
            response.close()
        assert server.connections == 1
        head = server.requests[0]
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nHost: localhost:" in head
        assert b"\r\nContent-Type: application/json\r\n" in head

    run(scenario())


def test_concurrent_requests_each_get_their_own_connection_then_reuse_them() -> None:
    async def scenario() -> None:
        server = Server(keep_alive)
        url = await server.start()
        for _ in range(2):
            responses = await asyncio.gather(*(post(url, b"[%d]" % n) for n in range(4)))
            bodies = [await r.read() for r in responses]
            assert bodies == [b'{"echo": [%d]}' % n for n in range(4)]
        assert server.connections == 4

    run(scenario())


def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    async def chunked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(
            OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        await writer.drain()
        await s.read_request(reader)  # kept alive after a chunked answer
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async def scenario() -> None:
        server = Server(chunked)
        url = await server.start()
        first = await post(url)
        assert await first.read() == b"abcde"
        second = await post(url)
        assert await second.read() == b"until the end"
        assert server.connections == 1
        assert (await post_after_close(url, server)) == b'{"echo": {"n": 1}}'

    async def post_after_close(url: str, server: Server) -> bytes:
        server.handler = keep_alive  # the next connection: a new one, the old one closed
        response = await post(url)
        assert server.connections == 2
        return await response.read()

    run(scenario())


def test_a_connection_the_upstream_closed_while_idle_is_not_used_again() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(answer(b"{}"))  # keep-alive by HTTP/1.1's default, then closed anyway
        await writer.drain()

    async def scenario() -> None:
        server = Server(once)
        url = await server.start()
        for _ in range(3):
            response = await post(url)
            assert await response.read() == b"{}"
            await asyncio.wait_for(server.closed.wait(), 5)
            server.closed.clear()
        assert server.connections == 3

    run(scenario())


def test_a_reused_connection_closed_as_the_request_goes_out_is_retried_once_on_a_new_one() -> None:
    async def drops_second(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(answer(b'"first"'))
        await writer.drain()
        if s.connections == 1:
            await s.read_request(reader)  # then closes without a byte of an answer
            return
        await keep_alive(reader, writer, s)

    async def scenario() -> None:
        server = Server(drops_second)
        url = await server.start()
        assert await (await post(url)).read() == b'"first"'
        assert await (await post(url)).read() == b'"first"'  # on the second connection
        assert server.connections == 2

    run(scenario())


def test_a_new_connection_closed_before_the_answer_is_an_error_not_a_retry() -> None:
    async def drops(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)

    async def scenario() -> None:
        server = Server(drops)
        url = await server.start()
        with pytest.raises(client.Disconnected):
            await post(url)
        assert server.connections == 1

    run(scenario())


def test_an_answer_cut_off_mid_body_raises_and_is_never_returned_short() -> None:
    async def cuts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK_HEAD + b"Content-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async def scenario() -> None:
        url = await Server(cuts).start()
        response = await post(url)
        assert response.status == 200
        with pytest.raises(client.Disconnected):
            await response.read()

    run(scenario())


def test_the_read_timeout_bounds_each_wait_not_the_whole_answer() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):  # 8 pieces 0.1 s apart: 0.8 s in all, each wait well under 0.3 s
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await s.read_request(reader)  # then nothing: the next answer's head never comes
        await reader.read()

    async def scenario() -> None:
        url = await Server(slow).start()
        response = await post(url, read_timeout=0.3)
        assert [piece async for piece in response.iter_any()] == [b"x"] * 8
        with pytest.raises(client.ReadTimeout):
            await post(url, read_timeout=0.3)

    run(scenario())


def test_what_is_not_http_is_refused() -> None:
    async def garbage(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        url = await Server(garbage).start()
        with pytest.raises(client.BadResponse):
            await post(url)

    run(scenario())


def test_nothing_listening_is_a_connect_error() -> None:
    async def scenario() -> None:
        server = Server(keep_alive)
        url = await server.start()
        assert server.server is not None
        server.server.close()
        await server.server.wait_closed()
        with pytest.raises(client.ConnectError):
            await post(url)

    run(scenario())


def test_only_http_urls_are_targets() -> None:
    for url in ("ftp://example.com/x", "file:///etc/passwd", "http:///no-host", "example.com"):
        with pytest.raises(ValueError):
            client.target(url, HEADERS)
    target = client.target("http://[::1]:8080/a/b?c=d", HEADERS)
    assert target.head.startswith(b"POST /a/b?c=d HTTP/1.1\r\nHost: [::1]:8080\r\n")
    assert client.target("https://example.com:443/", HEADERS).head.split(b"\r\n")[1] == (
        b"Host: example.com"
    )


def test_closing_an_answer_mid_stream_closes_its_connection_and_ends_the_iteration() -> None:
    async def endless(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"5\r\nchunk\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        server = Server(endless)
        url = await server.start()
        response = await post(url)
        pieces = []
        async for piece in response.iter_any():
            pieces.append(piece)
            if len(pieces) == 3:
                response.close()
        assert len(pieces) == 3
        await asyncio.wait_for(server.closed.wait(), 5)  # the upstream saw its client go
        assert await (await post(url)).read(5) == b"chunk"  # a new connection, not the closed one
        assert server.connections == 2

    run(scenario())


def test_a_large_answer_read_slowly_arrives_whole_while_the_socket_is_paused() -> None:
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK_HEAD + b"Content-Length: %d\r\n\r\n" % size)
        writer.write(payload)
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        url = await Server(large).start()
        response = await post(url)
        received = bytearray()
        paused_seen = False
        async for piece in response.iter_any():
            received += piece
            for _ in range(4):  # let the socket fill our buffer
                await asyncio.sleep(0)
            paused_seen = paused_seen or _paused(response)
        assert bytes(received) == payload
        assert paused_seen, "the socket was never paused"

    def _paused(response: client.Response) -> bool:
        connection = response._connection
        return connection is not None and connection.paused

    run(scenario())


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server_tls, pem.decode()


def test_https_upstreams_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server_tls, pem = _self_signed(tmp_path)

    async def untrusted() -> None:
        url = await Server(keep_alive).start(server_tls)
        with pytest.raises(client.ConnectError):
            await post(url)

    run(untrusted())

    trusting = ssl.create_default_context(cadata=pem)
    monkeypatch.setattr(client, "_tls_context", lambda: trusting)

    async def trusted() -> None:
        server = Server(keep_alive)
        url = await server.start(server_tls)
        for _ in range(2):
            assert await (await post(url)).read() == b'{"echo": {"n": 1}}'
        assert server.connections == 1

    run(trusted())


def test_idle_connections_are_closed_after_the_keepalive_and_leave_the_pool() -> None:
    async def scenario() -> None:
        pool = client.pool(keepalive=0.2)  # this loop's pool, made here with a short keep-alive
        server = Server(keep_alive)
        url = await server.start()
        assert await (await post(url)).read() == b'{"echo": {"n": 1}}'
        assert len(pool.idle) == 1
        await asyncio.wait_for(server.closed.wait(), 5)  # closed by the pool's sweep
        assert pool.idle == {}
        assert pool.sweep is None  # nothing idle: no timer left behind

    run(scenario())


def test_an_idle_connection_the_upstream_closes_leaves_the_pool_at_once() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(answer(b"{}"))
        await writer.drain()

    async def scenario() -> None:
        pool = client.pool()
        server = Server(once)
        url = await server.start()
        assert await (await post(url)).read() == b"{}"
        await asyncio.wait_for(server.closed.wait(), 5)
        deadline = asyncio.get_running_loop().time() + 5
        while pool.idle and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # the close reaches the client on a later turn of the loop
        assert pool.idle == {}

    run(scenario())


def test_interim_answers_are_skipped_and_upgrades_refused() -> None:
    async def interim(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        writer.write(answer(b'"real"', b"X-Answer: yes\r\n"))
        await writer.drain()
        await s.read_request(reader)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        url = await Server(interim).start()
        response = await post(url)
        assert response.status == 200
        assert response.headers.get("x-answer") == "yes"
        assert response.headers.get("link") is None
        assert await response.read() == b'"real"'
        with pytest.raises(client.BadResponse):
            await post(url)

    run(scenario())
