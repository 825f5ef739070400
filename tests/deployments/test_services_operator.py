"""The operators' stop and terminate: the ordinary transition, then every key revoked at once."""

from __future__ import annotations

import pytest

from buddy.core.errors import InvalidTransition
from deployments import services
from deployments.models import DeploymentStatus, EndReason, EventKind
from keys import services as key_services
from keys.models import ApiKey, RevokeReason
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def keyed(ready_deployment):
    key_services.key_create_default(deployment_id=ready_deployment.pk)
    key_services.key_create(deployment_id=ready_deployment.pk, name="ci", actor="t")
    return ready_deployment


@pytest.mark.parametrize(
    ("end", "status", "end_reason", "revoke_reason"),
    [
        (
            services.deployment_stop_by_operator,
            DeploymentStatus.STOPPED,
            EndReason.STOPPED_BY_OPERATOR,
            RevokeReason.DEPLOYMENT_STOPPED,
        ),
        (
            services.deployment_terminate_by_operator,
            DeploymentStatus.TERMINATED,
            EndReason.TERMINATED_BY_OPERATOR,
            RevokeReason.DEPLOYMENT_TERMINATED,
        ),
    ],
)
def test_operator_end_revokes_every_key_before_returning(
    keyed, end, status, end_reason, revoke_reason
):
    deployment = end(deployment_id=keyed.pk, actor="operator:ops")
    assert deployment.status == status and deployment.end_reason == end_reason
    keys = ApiKey.objects.filter(deployment=keyed)
    assert {k.revoke_reason for k in keys} == {revoke_reason}
    revoked_events = keyed.events.filter(kind=EventKind.KEY_REVOKED)
    assert revoked_events.count() == 2
    assert {e.actor for e in revoked_events} == {"operator:ops"}


def test_the_revocation_task_running_afterwards_changes_nothing(keyed):
    services.deployment_stop_by_operator(deployment_id=keyed.pk, actor="operator:ops")
    events = keyed.events.count()
    # What the worker's `keys.revoke_for_deployments` does when its message arrives.
    assert (
        key_services.key_revoke_all_for_deployments(
            deployment_ids=[keyed.pk], actor="system:revocation"
        )
        == 0
    )
    assert keyed.events.count() == events


def test_operator_stop_of_an_ended_deployment_is_refused_and_revokes_nothing():
    failed = DeploymentFactory(status=DeploymentStatus.FAILED)
    with pytest.raises(InvalidTransition):
        services.deployment_stop_by_operator(deployment_id=failed.pk, actor="operator:ops")
    assert not failed.events.exists()
