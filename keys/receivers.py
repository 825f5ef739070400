"""What keys do when a deployment tells them something (`deployments.signals`)."""

from __future__ import annotations

from collections.abc import Sequence

from deployments.signals import deployments_end_finish_requested
from keys import services


def _revoke_now(
    sender: type, deployment_ids: Sequence[object], actor: str, **kwargs: object
) -> None:
    services.key_revoke_all_for_deployments(deployment_ids=deployment_ids, actor=actor)


def connect() -> None:
    deployments_end_finish_requested.connect(
        _revoke_now, weak=False, dispatch_uid="keys-revoke-on-finish-requested"
    )
