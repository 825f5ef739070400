"""What keys do when a deployment tells them something (`deployments.signals`)."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from deployments.signals import deployments_end_finish_requested, deployments_ended
from keys import services


def _revoke_in_the_end(
    sender: type, deployment_ids: Sequence[object], actor: str = "system", **kwargs: object
) -> None:
    """Sent inside the ending transaction, before its commit: the keys are revoked by the same
    commit that ends their deployment, so no lookup ever sees the one without the other."""
    services.key_revoke_all_for_deployments(
        deployment_ids=deployment_ids, actor=actor, batch_size=settings.BUDDY_REVOKE_BATCH_SIZE
    )


def _revoke_now(
    sender: type, deployment_ids: Sequence[object], actor: str, **kwargs: object
) -> None:
    services.key_revoke_all_for_deployments(deployment_ids=deployment_ids, actor=actor)


def connect() -> None:
    deployments_ended.connect(_revoke_in_the_end, weak=False, dispatch_uid="keys-revoke-in-the-end")
    deployments_end_finish_requested.connect(
        _revoke_now, weak=False, dispatch_uid="keys-revoke-on-finish-requested"
    )
