"""Real Celery processes for the tests marked `celery_worker` (no eager mode).

The session's worker is `celery -A buddy worker --pool=prefork` in a subprocess of its own process
group, on the same Redis as the tests and on pytest-django's *test* database, so the tests that use
it must commit their data (`transactional_db`, which the marker brings). It provisions through the
`http` provisioner against a fake orchestrator on loopback, revokes keys in small batches
(so that a revocation can be caught in the middle) and has a short visibility timeout (so that
the task of a killed worker comes back within seconds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.db import connection

from tests.servers import FakeOrchestrator, wait_until

ROOT = Path(__file__).resolve().parent.parent

# What the session's worker is configured with (tests rely on these).
WORKER_VISIBILITY_TIMEOUT = 4
WORKER_REVOKE_BATCH_SIZE = 5
WORKER_PROVISIONER_MAX_RETRIES = 2
WORKER_LOCAL_ENDPOINT_URL = "http://127.0.0.1:9/local-model"


def worker_database_url() -> str:
    """DATABASE_URL of pytest-django's test database (valid once `django_db_setup` ran)."""
    db = connection.settings_dict
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


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


class CeleryProcess:
    """`celery -A buddy <args>` in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "buddy", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _signal_group(self, sig: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group: the main process and its pool children, mid-whatever."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(20)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(20)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Worker(CeleryProcess):
    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int = 2) -> None:
        self.nodename = f"buddy-test-{uuid.uuid4().hex[:8]}@%h"
        super().__init__(
            [
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "-Q", settings.CELERY_TASK_DEFAULT_QUEUE,
                "-n", self.nodename,
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
            log_path,
        )  # fmt: skip
        self.broker_url = env["REDIS_URL"]
        self._probe: Celery | None = None

    def start_and_wait(self, timeout: float = 90) -> None:
        self.start()
        wait_until(self.answers_ping, timeout=timeout, interval=0.3, what="the worker's ping")

    def answers_ping(self) -> bool:
        """The worker answers a remote-control ping through its broker (it is consuming)."""
        if not self.alive():
            raise AssertionError(f"the celery worker exited:\n{self.log_tail()}")
        if self._probe is None:
            # An app of its own, so that pinging never touches this process's publisher.
            self._probe = Celery("probe", broker=self.broker_url, set_as_current=False)
            self._probe.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        hostname = self.nodename.replace("%h", os.uname().nodename)
        try:
            return bool(self._probe.control.ping(destination=[hostname], timeout=0.5))
        except Exception:
            return False


def worker_env(*, redis_url: str, orchestrator_url: str, **extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "buddy.settings",
            "DATABASE_URL": worker_database_url(),
            "REDIS_URL": redis_url,
            "SECRET_KEY": settings.SECRET_KEY,  # the test process unseals what the worker seals
            "DEBUG": "false",
            "BUDDY_CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "BUDDY_PROVISIONER": "http",
            "BUDDY_PROVISIONER_URL": orchestrator_url,
            "BUDDY_PROVISIONER_TIMEOUT": "2",
            "BUDDY_PROVISIONER_MAX_RETRIES": str(WORKER_PROVISIONER_MAX_RETRIES),
            "BUDDY_LOCAL_ENDPOINT_URL": WORKER_LOCAL_ENDPOINT_URL,
            "BUDDY_TASK_VISIBILITY_TIMEOUT": str(WORKER_VISIBILITY_TIMEOUT),
            "BUDDY_REVOKE_BATCH_SIZE": str(WORKER_REVOKE_BATCH_SIZE),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def orchestrator() -> Iterator[FakeOrchestrator]:
    server = FakeOrchestrator()
    yield server
    server.close()


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: Any, orchestrator: FakeOrchestrator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """The session's real worker (started on first use, stopped before the test DB is dropped)."""
    purge_broker()
    log_dir = tmp_path_factory.mktemp("celery")
    worker = Worker(
        worker_env(redis_url=settings.REDIS_URL, orchestrator_url=orchestrator.url),
        log_dir / "worker.log",
    )
    try:
        worker.start_and_wait()
        yield worker
    finally:
        worker.stop()
        purge_broker()


@pytest.fixture
def celery_beat(
    celery_worker: Worker, orchestrator: FakeOrchestrator, tmp_path: Path
) -> Iterator[CeleryProcess]:
    """A real `celery -A buddy beat` with a 1 s expiry interval, for one test."""
    beat = CeleryProcess(
        ["beat", "-s", str(tmp_path / "celerybeat-schedule"), "--loglevel=INFO"],
        worker_env(
            redis_url=settings.REDIS_URL,
            orchestrator_url=orchestrator.url,
            BUDDY_EXPIRY_INTERVAL_SECONDS="1",
            BUDDY_RECONCILE_INTERVAL_SECONDS="3600",
        ),
        tmp_path / "beat.log",
    )
    beat.start()
    try:
        wait_until(
            lambda: "beat: Starting..." in beat.log_tail(200) or not beat.alive(),
            timeout=60,
            what="beat to start",
        )
        assert beat.alive(), beat.log_tail()
        yield beat
    finally:
        beat.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`@pytest.mark.celery_worker` means committed data: the worker is another process."""
    for item in items:
        if item.get_closest_marker("celery_worker") is not None:
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(autouse=True)
def _celery_worker_marker(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.celery_worker` brings the session's running worker."""
    if request.node.get_closest_marker("celery_worker") is None:
        return
    worker = request.getfixturevalue("celery_worker")
    if not worker.alive():  # a previous test killed it and failed before restarting it
        worker.start_and_wait()


@contextlib.contextmanager
def app_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (the publisher) and lookup cache at another Redis."""
    from django.test import override_settings

    from buddy.core import redis as core_redis
    from buddy.core.tasks import app, broker_breaker

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
