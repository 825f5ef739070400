"""Redis as the tests use it besides the shared test database (REDIS_URL): a private
`redis-server` a test may stop, kill and start again, the Celery broker's queues, and pointing
this process's publisher and lookup cache at another Redis."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import redis
from django.conf import settings
from django.test import override_settings

from buddy.core import redis as core_redis
from buddy.core.tasks import app, broker_breaker
from tests.harness.ports import free_port
from tests.harness.wait import wait_until


class PrivateRedis:
    """A `redis-server` of the test's own, on its own port (the shared one is never stopped)."""

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
        wait_until(self._started, timeout=30, what=f"the private redis-server on {self.port}")

    def _started(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the private redis-server on {self.port} exited at start-up")
        return self.is_up()

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """Shut it down (SIGTERM), or kill it if it does not go within 10 s."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: gone at once, as a crashed server is."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


# --- the Celery broker (a Redis database) --------------------------------------------------------


def broker_prefix() -> str:
    return settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]


def broker_idle(redis_url: str | None = None) -> bool:
    """No message waiting in the queue and none taken but unfinished (late acks)."""
    r = redis.Redis.from_url(redis_url or settings.REDIS_URL)
    prefix = broker_prefix()
    return (
        r.llen(prefix + settings.CELERY_TASK_DEFAULT_QUEUE) == 0 and r.hlen(prefix + "unacked") == 0
    )


def purge_broker(redis_url: str | None = None) -> None:
    r = redis.Redis.from_url(redis_url or settings.REDIS_URL)
    for name in r.scan_iter(match=broker_prefix() + "*", count=1000):
        r.delete(name)


def clear_test_redis() -> None:
    """Empty the shared test database (never db 0) but for the broker's keys, which the session's
    Celery worker consumes from; forget this process's client and broker outage."""
    r = redis.Redis.from_url(settings.REDIS_URL)
    keep = broker_prefix().encode()
    stale = [name for name in r.scan_iter(count=1000) if not name.startswith(keep)]
    for start in range(0, len(stale), 500):
        r.delete(*stale[start : start + 500])
    core_redis.client.cache_clear()
    broker_breaker.reset()


@contextlib.contextmanager
def app_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (the publisher) and lookup cache at another Redis."""

    def reset() -> None:
        app._pool = None
        app.amqp._producer_pool = None
        core_redis.client.cache_clear()
        broker_breaker.reset()

    previous = app.conf.broker_url
    app.conf.broker_url = url
    reset()
    try:
        with override_settings(REDIS_URL=url):
            yield
    finally:
        app.conf.broker_url = previous
        reset()
