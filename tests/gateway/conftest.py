from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from deployments.models import Deployment
from deployments.services import deployment_create, deployment_mark_ready
from keys.services import key_create_default, key_reveal_default
from tests.factories import TemplateFactory, UserFactory
from tests.harness.fakes import (
    UPSTREAM_API_KEY,
    UPSTREAM_READ_TIMEOUT,
    FakeUpstream,
    serve_in_thread,
)
from tests.harness.processes import buddy_server


@pytest.fixture(scope="module")
def _upstream_server() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    with serve_in_thread(upstream) as url:
        upstream.url = url
        yield upstream
        upstream.release.set()


@pytest.fixture
def upstream(_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    _upstream_server.reset()
    yield _upstream_server
    _upstream_server.release.set()  # never leave a handler waiting for the next test


@pytest.fixture(scope="module")
def buddy_url(django_db_setup, django_db_blocker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """buddy under uvicorn (as deployed, for streamed answers) with the gateway's upstream settings."""
    with buddy_server(
        "uvicorn",
        BUDDY_LOCAL_MODEL_ENABLED="true",
        BUDDY_UPSTREAM_API_KEY=UPSTREAM_API_KEY,
        BUDDY_UPSTREAM_READ_TIMEOUT_SECONDS=str(UPSTREAM_READ_TIMEOUT),
    ) as url:
        yield url


@dataclass
class Deployed:
    deployment: Deployment
    default_key_id: str
    secret: str


@pytest.fixture
def deploy(transactional_db):  # type: ignore[no-untyped-def]
    """Deploy gemma4:26b the way the platform does (services, committed), ready at an endpoint,
    with its default key revealed. Committed data, so the server in another process sees it."""
    owner = UserFactory()
    TemplateFactory()

    def _deploy(endpoint_url: str) -> Deployed:
        deployment = deployment_create(
            owner=owner, template_slug="gemma4-26b", pack_hours=1, actor="test"
        )
        deployment = deployment_mark_ready(
            deployment_id=deployment.pk, endpoint_url=endpoint_url, actor="test"
        )
        key = key_create_default(deployment_id=deployment.pk)
        assert key is not None
        secret = key_reveal_default(key_id=key.pk, actor="test")
        return Deployed(deployment, str(key.pk), secret)

    return _deploy
