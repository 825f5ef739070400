"""Races against real PostgreSQL, from real threads."""

import pytest

from buddy.core.errors import DeploymentNotReady, SecretAlreadyShown
from deployments.services import deployment_stop
from keys import services
from keys.models import ApiKey
from tests.factories import DeploymentFactory
from tests.harness.threads import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_threads_asking_for_the_default_key_leave_exactly_one():
    deployment = DeploymentFactory(ready=True)
    results = run_concurrently(
        lambda _: services.key_create_default(deployment_id=deployment.pk), 20
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.pk for r in results}) == 1
    assert ApiKey.objects.filter(deployment=deployment, is_default=True).count() == 1
    assert deployment.events.filter(kind="key_created").count() == 1


@pytest.mark.parametrize("attempt", range(10))
def test_a_key_created_concurrently_with_a_stop_never_stays_active(attempt):
    deployment = DeploymentFactory(ready=True)

    def act(i: int):
        if i == 0:
            return deployment_stop(deployment_id=deployment.pk, actor="t")
        return services.key_create(deployment_id=deployment.pk, name=f"k{i}", actor="t")

    results = run_concurrently(act, 6)
    for r in results:
        assert not isinstance(r, Exception) or isinstance(r, DeploymentNotReady), r
    # What the stop's follow-up task does (it runs after the commit): revoke every active key.
    services.key_revoke_all_for_deployments(deployment_ids=[deployment.pk], actor="t")
    deployment.refresh_from_db()
    assert deployment.status == "stopped"
    assert not ApiKey.objects.filter(deployment=deployment, revoked_at__isnull=True).exists()
    # And no key was created after the stop committed.
    stopped_at = deployment.ended_at
    assert not ApiKey.objects.filter(deployment=deployment, created_at__gt=stopped_at).exists()


def test_two_concurrent_reveals_give_one_secret_and_one_already_shown():
    deployment = DeploymentFactory(ready=True)
    key = services.key_create_default(deployment_id=deployment.pk)
    results = run_concurrently(lambda _: services.key_reveal_default(key_id=key.pk, actor="t"), 2)
    secrets = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, SecretAlreadyShown)]
    assert len(secrets) == 1 and len(refused) == 1, results
    assert deployment.events.filter(kind="key_revealed").count() == 1


def test_concurrent_transitions_serialise():
    deployment = DeploymentFactory(ready=True)
    from buddy.core.errors import InvalidTransition
    from deployments.services import deployment_fail

    def act(i: int):
        if i % 2:
            return deployment_stop(deployment_id=deployment.pk, actor="t")
        return deployment_fail(deployment_id=deployment.pk, actor="t")

    results = run_concurrently(act, 8)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, InvalidTransition) for r in results if isinstance(r, Exception))
    assert deployment.events.filter(kind__in=["stopped", "failed"]).count() == 1
