"""Session-wide checks and the fixtures of the test harness (`tests/harness/`).

The suite runs against real PostgreSQL and Redis (`make test` starts them when needed). A missing
service fails the run loudly at the start; no test skips because of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from keys import services as key_services
from tests.console import token_client
from tests.factories import DeploymentFactory, TemplateFactory, UserFactory
from tests.harness.fakes import FakeOrchestrator
from tests.harness.processes import Beat, Worker, worker_env
from tests.harness.redis import PrivateRedis, broker_idle, clear_test_redis, purge_broker


def pytest_sessionstart(session: pytest.Session) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            f"The suite runs against PostgreSQL; DATABASE_URL points at {engine}. Use `make test`."
        )
    if not settings.REDIS_URL:
        raise pytest.UsageError("The suite needs Redis: set REDIS_URL (`make test` does).")
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise pytest.UsageError(f"Redis at {settings.REDIS_URL} is not reachable: {exc}") from exc


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`@pytest.mark.celery_worker` means committed data: the worker is another process."""
    for item in items:
        if item.get_closest_marker("celery_worker") is not None:
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """Each test starts with an empty Redis database (the test one, never db 0), except for the
    broker's keys: the session's Celery worker consumes from this database too."""
    clear_test_redis()


# --- Redis of a test's own ------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A running `redis-server` of this test's own, which it may stop or kill (stopped at the end)."""
    with PrivateRedis(str(tmp_path)) as server:
        yield server


# --- real Celery processes (no eager mode) --------------------------------------------------------


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
    worker = Worker(
        worker_env(redis_url=settings.REDIS_URL, orchestrator_url=orchestrator.url),
        tmp_path_factory.mktemp("celery") / "worker.log",
    )
    try:
        worker.start_and_wait()
        _session_worker.append(worker)
        yield worker
    finally:
        _session_worker.clear()
        worker.stop()
        purge_broker()


_session_worker: list[Worker] = []  # the session's worker, once some test started it


@pytest.fixture(autouse=True)
def _worker_done_before_the_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Once the session's worker runs, it takes any task a test's commit sends (a ready callback
    sends `keys.create_default`), marked `celery_worker` or not; a transactional test's database
    flush while that task still writes deadlocks in PostgreSQL. So such a test's end waits (at
    most 30 s, never failing for it) until the broker is idle, before the flush: this fixture is
    set up after the database's, so it is torn down before it."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction", False)
    )
    if not transactional:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    yield
    if _session_worker and _session_worker[0].alive():
        deadline = time.monotonic() + 30
        while not broker_idle() and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture(autouse=True)
def _celery_worker_marker(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.celery_worker` brings the session's running worker."""
    if request.node.get_closest_marker("celery_worker") is None:
        return
    worker = request.getfixturevalue("celery_worker")
    if not worker.alive():  # a previous test killed it and failed before restarting it
        worker.start_and_wait()


@pytest.fixture
def celery_beat(
    celery_worker: Worker, orchestrator: FakeOrchestrator, tmp_path: Path
) -> Iterator[Beat]:
    """A real `celery -A buddy beat` with a 1 s expiry interval, for one test."""
    beat = Beat(
        worker_env(
            redis_url=settings.REDIS_URL,
            orchestrator_url=orchestrator.url,
            BUDDY_EXPIRY_INTERVAL_SECONDS="1",
            BUDDY_RECONCILE_INTERVAL_SECONDS="3600",
        ),
        tmp_path,
    )
    try:
        beat.start_and_wait()
        yield beat
    finally:
        beat.stop()


# --- data ------------------------------------------------------------------------------------------


@pytest.fixture
def user(db):  # type: ignore[no-untyped-def]
    return UserFactory()


@pytest.fixture
def other_user(db):  # type: ignore[no-untyped-def]
    return UserFactory()


@pytest.fixture
def template(db):  # type: ignore[no-untyped-def]
    return TemplateFactory()


@pytest.fixture
def ready_deployment(db, user, template):  # type: ignore[no-untyped-def]
    return DeploymentFactory(owner=user, template=template, ready=True)


@pytest.fixture
def live_key(ready_deployment):  # type: ignore[no-untyped-def]
    """An active key of `ready_deployment`: (ApiKey, plaintext)."""
    return key_services.key_create(deployment_id=ready_deployment.pk, name="a", actor="t")


# --- console clients -------------------------------------------------------------------------------


@pytest.fixture
def api(user):  # type: ignore[no-untyped-def]
    """The console API as `user`, signed in with a console token."""
    return token_client(user)


@pytest.fixture
def other_api(other_user):  # type: ignore[no-untyped-def]
    """The console API as another user."""
    return token_client(other_user)
