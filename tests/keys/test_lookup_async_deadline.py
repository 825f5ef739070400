"""The async read's connection (`keys.lookup.cache._Pipelined`) against a Redis that answers late or
never: one timer per connection fails what is overdue, never what is not, and the breaker then
sends lookups to PostgreSQL. A real socket server that speaks RESP stands in for the slow Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import hiredis
import pytest
from django.test import override_settings

from keys.lookup import cache as lookup_cache


class SlowRedis:
    """Answers `+PONG` to every command `delay` seconds after it arrived (never, for None), in
    order, as Redis does."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.server: asyncio.Server | None = None
        self.commands: list[list[bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def stop(self) -> None:
        """Close the connections it holds, and wait for their handlers to end."""
        for writer in self.writers:
            writer.close()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=5)
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.append(writer)
        parser = hiredis.Reader()
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    self.commands.append(command)
                    if self.delay is not None:
                        loop.call_later(self.delay, writer.write, b"+PONG\r\n")
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture(autouse=True)
def _breaker_closed() -> Iterator[None]:
    lookup_cache.breaker.reset()
    yield
    lookup_cache.breaker.reset()


def test_commands_answered_in_time_are_never_failed_by_the_deadline_of_others() -> None:
    """Commands sent 0.3 s apart, each answered 0.3 s after it was sent: the watch that fires
    0.5 s after the first finds the second not yet due and looks again later."""

    async def scenario() -> None:
        slow = SlowRedis(delay=0.3)
        url = await slow.start()
        with override_settings(BUDDY_CACHE_REDIS_URL=url):
            first = asyncio.ensure_future(lookup_cache._async_hot.call("PING"))
            await asyncio.sleep(0.3)  # the pace of the scenario, not a wait for a condition
            second = asyncio.ensure_future(lookup_cache._async_hot.call("PING"))
            assert await first == b"PONG"
            assert await second == b"PONG"
            started = time.monotonic()
            assert await lookup_cache._async_hot.call("PING") == b"PONG"
            assert time.monotonic() - started < lookup_cache._ASYNC_TIMEOUT
        await slow.stop()

    asyncio.run(scenario())


def test_a_redis_that_never_answers_fails_the_read_within_its_deadline_and_trips_the_breaker() -> (
    None
):
    async def scenario() -> None:
        silent = SlowRedis(delay=None)
        url = await silent.start()
        with override_settings(BUDDY_CACHE_REDIS_URL=url):
            started = time.monotonic()
            reads = await asyncio.gather(
                lookup_cache.aread("abcdefghijkl", "0" * 64, count=False),
                lookup_cache.aread("mnopqrstuvwx", "0" * 64, count=False),
            )
            waited = time.monotonic() - started
            assert list(reads) == [None, None]  # no answer: the caller takes PostgreSQL
            assert lookup_cache._ASYNC_TIMEOUT <= waited < 4 * lookup_cache._ASYNC_TIMEOUT
            assert lookup_cache.breaker.is_open
            # Both reads were sent (pipelined on one connection), and the stalled connection is
            # gone: the next command makes a new one.
            assert [command[0] for command in silent.commands] == [b"EVALSHA", b"EVALSHA"]
            assert lookup_cache._async_hot.ready() is None
        await silent.stop()

    asyncio.run(scenario())
