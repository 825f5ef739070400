"""What a deployment's change tells its owner's webhooks (`buddy.webhooks`): each event is stored
by the transaction of the change, with the deployment's console representation at that moment."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from buddy.webhooks.models import EventType
from buddy.webhooks.selectors import webhook_event_exists
from buddy.webhooks.services import NewEvent, webhook_event_enqueue_once, webhook_events_enqueue
from deployments import selectors
from deployments.models import Deployment
from deployments.serializers import DeploymentOutputSerializer


def _data(deployment: Deployment) -> dict[str, Any]:
    return {"deployment": dict(DeploymentOutputSerializer(deployment).data)}


def _send(deployment_ids: Sequence[object], event_type: str) -> None:
    if not deployment_ids:
        return
    deployments = selectors.deployment_list_for_webhooks(deployment_ids=deployment_ids)
    webhook_events_enqueue(
        events=[
            NewEvent(owner_id=d.owner_id, type=event_type, data=functools.partial(_data, d))
            for d in deployments
        ]
    )


def deployment_ready(deployment_id: object) -> None:
    _send([deployment_id], EventType.DEPLOYMENT_READY)


def deployment_extended(deployment_id: object) -> None:
    _send([deployment_id], EventType.DEPLOYMENT_EXTENDED)


def deployments_ended(deployment_ids: Sequence[object]) -> None:
    _send(deployment_ids, EventType.DEPLOYMENT_ENDED)


def _pack_ending_key(deployment_id: object, pack_ends_at: datetime) -> str:
    return f"pack_ending:{deployment_id}:{pack_ends_at.isoformat()}"


def pack_ending_sent(deployment_id: object, pack_ends_at: datetime) -> bool:
    return webhook_event_exists(dedupe_key=_pack_ending_key(deployment_id, pack_ends_at))


def deployment_pack_ending(deployment: Deployment) -> bool:
    """The notice that the pack ends soon, once per value of `pack_ends_at` (an extension moves
    it, and the new end gets its own notice); True if this call stored it."""
    shown = selectors.deployment_list_for_webhooks(deployment_ids=[deployment.pk])
    if not shown:
        return False
    return webhook_event_enqueue_once(
        event=NewEvent(
            owner_id=deployment.owner_id,
            type=EventType.DEPLOYMENT_PACK_ENDING,
            data=functools.partial(_data, shown[0]),
            dedupe_key=_pack_ending_key(deployment.pk, deployment.pack_ends_at),
        )
    )
