"""Session-wide checks and fixtures.

The suite runs against real PostgreSQL and Redis (`make test` starts them when needed). A missing
service fails the run loudly at the start; no test skips because of it.
"""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

from buddy.core import redis as core_redis
from buddy.core.tasks import broker_breaker

# Real Celery worker / beat processes for the tests marked `celery_worker`: tests/celery_worker.py.
from tests.celery_worker import (  # noqa: F401
    _celery_worker_marker,
    celery_beat,
    celery_worker,
    orchestrator,
    pytest_collection_modifyitems,
)
from tests.factories import DeploymentFactory, TemplateFactory, UserFactory


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


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """Each test starts with an empty Redis database (the test one, never db 0), except for the
    broker's keys: the session's Celery worker consumes from this database too."""
    r = redis.Redis.from_url(settings.REDIS_URL)
    keep = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"].encode()
    stale = [name for name in r.scan_iter(count=1000) if not name.startswith(keep)]
    for start in range(0, len(stale), 500):
        r.delete(*stale[start : start + 500])
    core_redis.client.cache_clear()
    broker_breaker.reset()  # a previous test's broker outage is not this test's


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
