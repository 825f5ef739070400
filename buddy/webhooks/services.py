"""Every write to webhooks: endpoints, the outbox of events, and their delivery.

- Apps call `webhook_events_enqueue` (or `webhook_event_enqueue_once`) *inside* the transaction of
  the change an event reports: the event and one delivery row per subscribed endpoint commit with
  the change or not at all, and the delivery task is sent once they have committed.
- `webhook_endpoint_deliver` (the task's body) delivers what is due to one endpoint, one attempt
  at a time in event order, under a lock of that endpoint (a PostgreSQL session advisory lock,
  released by the database if the worker dies), so each endpoint has at most one attempt in
  flight and a slow one holds at most one worker slot, for a bounded time per task run.
- Beat's `webhook_redrive` sends the task again for every endpoint with something due, which is
  how retries happen and how a lost message or a killed worker is recovered from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from buddy.core import sealing
from buddy.core.errors import ValidationFailed, WebhookLimitReached
from buddy.core.ids import as_uuid
from buddy.core.tasks import enqueue_on_commit
from buddy.webhooks import outbound, signing
from buddy.webhooks.models import (
    ALL_EVENTS,
    SUBSCRIBABLE_TYPES,
    DeliveryStatus,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.deliver"


# --- the outbox -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event an app reports: whose, what type, and its `data` (the console representations;
    a callable is called only if someone is subscribed, so unsubscribed owners cost no query)."""

    owner_id: int
    type: str
    data: Mapping[str, Any] | Callable[[], Mapping[str, Any]]
    dedupe_key: str | None = None


def _now_text(now: datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")


def _event_row(event: NewEvent, *, now: datetime) -> WebhookEvent:
    uid = f"evt_{uuid.uuid4().hex}"
    data = event.data() if callable(event.data) else event.data
    body = json.dumps(
        {"id": uid, "type": event.type, "created_at": _now_text(now), "data": data},
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
    )
    return WebhookEvent(
        uid=uid, owner_id=event.owner_id, type=event.type, body=body, dedupe_key=event.dedupe_key
    )


def _subscribers(owner_ids: set[int]) -> dict[int, list[WebhookEndpoint]]:
    by_owner: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(owner_id__in=owner_ids, is_active=True).only(
        "id", "owner_id", "events"
    ):
        by_owner.setdefault(endpoint.owner_id, []).append(endpoint)
    return by_owner


def _owe(rows: Sequence[tuple[WebhookEvent, list[WebhookEndpoint]]], *, now: datetime) -> None:
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint=endpoint, event=row, next_attempt_at=now)
        for row, endpoints in rows
        for endpoint in endpoints
    )
    for endpoint_id in sorted({e.pk for _row, endpoints in rows for e in endpoints}):
        enqueue_on_commit(DELIVER_TASK, str(endpoint_id))


def webhook_events_enqueue(*, events: Sequence[NewEvent]) -> int:
    """Store these events and what each subscribed endpoint is owed; call it inside the
    transaction of the change they report. Events nobody subscribes to are not stored. Returns
    how many were stored."""
    if not events:
        return 0
    now = timezone.now()
    with transaction.atomic():
        by_owner = _subscribers({event.owner_id for event in events})
        pending: list[tuple[WebhookEvent, list[WebhookEndpoint]]] = []
        for event in events:
            targets = [e for e in by_owner.get(event.owner_id, []) if e.subscribes_to(event.type)]
            if targets:
                pending.append((_event_row(event, now=now), targets))
        if not pending:
            return 0
        WebhookEvent.objects.bulk_create([row for row, _targets in pending])
        _owe(pending, now=now)
    return len(pending)


def webhook_event_enqueue_once(*, event: NewEvent) -> bool:
    """`webhook_events_enqueue` of one event carrying a `dedupe_key`, stored at most once for
    that key however often (or concurrently) asked; True if this call stored it. Nothing is
    stored while nobody subscribes, so a later call can still send it."""
    assert event.dedupe_key, "an event sent once needs its dedupe_key"
    now = timezone.now()
    with transaction.atomic():
        targets = [
            e for e in _subscribers({event.owner_id}).get(event.owner_id, [])
            if e.subscribes_to(event.type)
        ]  # fmt: skip
        if not targets:
            return False
        row = _event_row(event, now=now)
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            return False  # sent already (or being sent by a concurrent transaction that won)
        _owe([(row, targets)], now=now)
    return True


# --- endpoints ------------------------------------------------------------------------------------


def _validate_events(events: object) -> list[str]:
    message = f'A non-empty list of event types ({", ".join(SUBSCRIBABLE_TYPES)}), or ["*"].'
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) for e in events)
        or len(events) > len(SUBSCRIBABLE_TYPES) + 1
    ):
        raise ValidationFailed(fields={"events": [message]})
    if ALL_EVENTS in events:
        if len(set(events)) != 1:
            raise ValidationFailed(fields={"events": ['"*" stands alone: it means every event.']})
        return [ALL_EVENTS]
    unknown = sorted(set(events) - set(SUBSCRIBABLE_TYPES))
    if unknown:
        raise ValidationFailed(fields={"events": [f"Unknown event types: {', '.join(unknown)}."]})
    return [t for t in SUBSCRIBABLE_TYPES if t in events]


def webhook_endpoint_create(
    *, owner_id: int, url: object, events: object
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned here only; kept sealed)."""
    try:
        url = outbound.url_validate(url)
    except outbound.UnsafeUrl as exc:
        raise ValidationFailed(fields={"url": [str(exc)]}) from None
    event_types = _validate_events(events)
    secret = signing.new_secret()
    with transaction.atomic():
        # The owner's row serializes concurrent registrations, so the cap holds under races.
        get_user_model().objects.select_for_update().filter(pk=owner_id).first()
        limit = settings.BUDDY_WEBHOOKS_PER_USER
        if WebhookEndpoint.objects.filter(owner_id=owner_id).count() >= limit:
            raise WebhookLimitReached(f"A user holds at most {limit} webhook endpoints.")
        endpoint = WebhookEndpoint.objects.create(
            owner_id=owner_id, url=url, events=event_types, sealed_secret=sealing.seal(secret)
        )
    return endpoint, secret


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint, with what it was owed (its deliveries)."""
    endpoint.delete()


def webhook_endpoint_ping(*, endpoint: WebhookEndpoint) -> WebhookEvent:
    """A `ping` owed to this endpoint alone (subscribed to it or not)."""
    now = timezone.now()
    with transaction.atomic():
        row = _event_row(
            NewEvent(
                owner_id=endpoint.owner_id,
                type=EventType.PING,
                data={"endpoint": {"id": str(endpoint.pk), "url": endpoint.url}},
            ),
            now=now,
        )
        row.save(force_insert=True)
        if endpoint.is_active:
            _owe([(row, [endpoint])], now=now)
        else:
            WebhookDelivery.objects.create(
                endpoint=endpoint,
                event=row,
                status=DeliveryStatus.FAILED,
                last_error="The endpoint is disabled.",
            )
    return row


def webhook_endpoint_enable(*, endpoint_id: object) -> bool:
    """An operator's re-enabling of a disabled endpoint (its failure clock starts again)."""
    pk = as_uuid(endpoint_id)
    return pk is not None and (
        WebhookEndpoint.objects.filter(pk=pk, is_active=False).update(
            is_active=True, disabled_reason="", failing_since=None
        )
        == 1
    )


# --- delivery -------------------------------------------------------------------------------------

_LOCK_NAMESPACE = b"buddy.webhooks.endpoint:"
_local_locks: dict[uuid.UUID, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@contextlib.contextmanager
def _endpoint_lock(pk: uuid.UUID) -> Iterator[bool]:
    """Whether this process holds the endpoint's delivery lock for the block: a PostgreSQL
    session advisory lock (freed by the server if the worker dies mid-delivery); a process-local
    lock on the embedded default's SQLite (one process runs its tasks)."""
    if connection.vendor != "postgresql":
        with _local_locks_guard:
            lock = _local_locks.setdefault(pk, threading.Lock())
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()
        return
    key = int.from_bytes(
        hashlib.sha256(_LOCK_NAMESPACE + pk.bytes).digest()[:8], "big", signed=True
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with contextlib.suppress(Exception), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _next_due(pk: uuid.UUID, now: datetime) -> WebhookDelivery | None:
    return (
        WebhookDelivery.objects.filter(
            endpoint_id=pk, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        )
        .select_related("event")
        .order_by("event_id")
        .first()
    )


def _disable(endpoint: WebhookEndpoint, *, reason: str) -> None:
    with transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
            is_active=False, disabled_reason=reason[:300]
        )
        WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED,
            next_attempt_at=None,
            last_error="The endpoint was disabled.",
        )
    logger.warning("webhook endpoint %s disabled: %s", endpoint.pk, reason)


def _record(
    endpoint: WebhookEndpoint, delivery: WebhookDelivery, outcome: outbound.Outcome
) -> None:
    now = timezone.now()
    attempts = delivery.attempts + 1
    schedule = settings.BUDDY_WEBHOOK_RETRY_SCHEDULE
    if outcome.ok:
        status, next_at = DeliveryStatus.DELIVERED, None
    elif attempts <= len(schedule):
        status, next_at = DeliveryStatus.PENDING, now + timedelta(seconds=schedule[attempts - 1])
    else:
        status, next_at = DeliveryStatus.FAILED, None
    error = outcome.error or ("" if outcome.ok else f"answered {outcome.status_code}")
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        status=status,
        attempts=attempts,
        last_status_code=outcome.status_code,
        last_error=error[:200],
        last_attempt_at=now,
        next_attempt_at=next_at,
    )
    if outcome.ok:
        if endpoint.failing_since is not None:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
            endpoint.failing_since = None
        return
    if endpoint.failing_since is None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
            failing_since=now
        )
        endpoint.failing_since = now
    elif now - endpoint.failing_since >= settings.BUDDY_WEBHOOK_DISABLE_AFTER:
        _disable(
            endpoint,
            reason=(
                f"Every delivery has failed since {_now_text(endpoint.failing_since)} "
                f"(last: {error})."
            ),
        )


def _attempt(endpoint: WebhookEndpoint, delivery: WebhookDelivery, secret: str) -> None:
    event = delivery.event
    headers = signing.signed_headers(
        secret=secret, msg_id=event.uid, body=event.body, at=timezone.now()
    )
    outcome = outbound.post(endpoint.url, body=event.body.encode(), headers=headers)
    _record(endpoint, delivery, outcome)
    logger.info(
        "webhook %s %s to endpoint %s: %s",
        event.type,
        event.uid,
        endpoint.pk,
        "delivered" if outcome.ok else (outcome.error or f"answered {outcome.status_code}"),
    )


def _seconds_until_due(pk: uuid.UUID, now: datetime) -> float | None:
    soonest = (
        WebhookDelivery.objects.filter(
            endpoint_id=pk, endpoint__is_active=True, status=DeliveryStatus.PENDING
        )
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return None if soonest is None else max(0.0, (soonest - now).total_seconds())


def webhook_endpoint_deliver(*, endpoint_id: object) -> float | None:
    """Deliver what is due to this endpoint, in event order, one attempt at a time, for at most
    `BUDDY_WEBHOOK_TASK_BUDGET_SECONDS` (then the task is sent again, behind other endpoints'
    work). Does nothing if another worker holds the endpoint (it sees what is due before it
    lets go). Returns in how many seconds the endpoint's next delivery is due (None: nothing
    pending), for the caller to schedule the next run."""
    pk = as_uuid(endpoint_id)
    if pk is None:
        return None
    with _endpoint_lock(pk) as held:
        if not held:
            return None
        endpoint = WebhookEndpoint.objects.filter(pk=pk, is_active=True).first()
        if endpoint is None:
            return None
        secret = sealing.unseal(bytes(endpoint.sealed_secret))
        deadline = time.monotonic() + settings.BUDDY_WEBHOOK_TASK_BUDGET_SECONDS
        while time.monotonic() < deadline and endpoint.is_active:
            delivery = _next_due(pk, timezone.now())
            if delivery is None:
                break
            _attempt(endpoint, delivery, secret)
            endpoint.refresh_from_db(fields=["is_active", "failing_since"])
    return _seconds_until_due(pk, timezone.now())


def webhook_events_prune(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Delete events (with their deliveries) older than `BUDDY_WEBHOOK_RETENTION_DAYS` that owe
    nothing more (no pending delivery); returns how many. A pack-ending notice's dedupe key goes
    with it, long after the end it announced has passed."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BUDDY_WEBHOOK_RETENTION_DAYS)
    total = 0
    while True:
        batch = list(
            WebhookEvent.objects.filter(created_at__lt=cutoff)
            .exclude(deliveries__status=DeliveryStatus.PENDING)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not batch:
            return total
        with transaction.atomic():
            WebhookDelivery.objects.filter(event_id__in=batch).delete()
            WebhookEvent.objects.filter(id__in=batch).delete()
        total += len(batch)


def webhook_redrive(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Send the delivery task for every active endpoint with a delivery due (retries, lost
    messages, killed workers); returns for how many endpoints."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True),
            status=DeliveryStatus.PENDING,
            endpoint__is_active=True,
        )
        .order_by()
        .values_list("endpoint_id", flat=True)
        .distinct()[:limit]
    )
    for endpoint_id in due:
        enqueue_on_commit(DELIVER_TASK, str(endpoint_id))
    return len(due)
