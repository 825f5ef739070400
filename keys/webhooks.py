"""What a key's change tells its owner's webhooks (`buddy.webhooks`): each event is stored by the
transaction of the change, with the key's console representation at that moment (never its
secret)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from buddy.webhooks.models import EventType
from buddy.webhooks.services import NewEvent, webhook_events_enqueue
from keys.models import ApiKey
from keys.serializers import KeyOutputSerializer, key_usage_context


def _data(key: ApiKey, context: Callable[[], dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "key": dict(KeyOutputSerializer(key, context=context()).data),
        "deployment_id": str(key.deployment_id),
        **extra,
    }


def _send(keys: Iterable[ApiKey], event_type: str, **extra: Any) -> None:
    sent = [key for key in keys if key.deployment is not None]
    # The representations' `usage_24h`: one query for the whole batch, made only if some owner
    # has an endpoint that wants the event (the data is built lazily).
    context = functools.cache(lambda: key_usage_context(sent))
    webhook_events_enqueue(
        events=[
            NewEvent(
                owner_id=key.deployment.owner_id,
                type=event_type,
                data=functools.partial(_data, key, context, **extra),
            )
            for key in sent
            if key.deployment is not None
        ]
    )


def key_created(key: ApiKey) -> None:
    _send([key], EventType.KEY_CREATED)


def keys_revoked(keys: Iterable[ApiKey]) -> None:
    _send(keys, EventType.KEY_REVOKED)


def key_leaked(key: ApiKey, *, url: str) -> None:
    """`key.leaked`: the key was found in public (`url`: where, as the scanner reported it)."""
    _send([key], EventType.KEY_LEAKED, url=url)
