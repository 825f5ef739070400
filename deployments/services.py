"""Every write to a deployment. Nothing else assigns `Deployment.status`.

A transition locks the deployment row (`select_for_update`), checks the move against the status
spec (`deployments.models.STATUS_SPEC`), writes the event row in the same transaction and
schedules its follow-up work (default key, revocation, teardown, cache invalidation) to run only
once that transaction commits. Every end, of one deployment or of a sweep's batch, goes through
one plural path (`_end`).
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone

from buddy.core.errors import InvalidTransition, NotFound, ValidationFailed
from buddy.core.ids import as_uuid
from deployments import followups, selectors, signals, webhooks
from deployments.models import (
    PACK_EXPIRED_STATUS,
    STATUS_SPEC,
    TERMINAL_STATUSES,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EndReason,
    EventKind,
    Template,
    statuses_where,
)

S = DeploymentStatus

# The status diagram of the contract: from each status, where it may go.
ALLOWED_TRANSITIONS: dict[str, frozenset[DeploymentStatus]] = {
    status: spec.goes_to for status, spec in STATUS_SPEC.items()
}

_EVENT_OF_STATUS: dict[str, EventKind] = {
    status: spec.event for status, spec in STATUS_SPEC.items()
}

# Statuses in which the pack may be extended.
EXTENDABLE_STATUSES = frozenset(statuses_where(lambda spec: spec.extendable))


def is_transition_allowed(current: str, target: str) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def validate_endpoint_url(endpoint_url: object) -> str:
    """An absolute http(s) URL with a host and nothing else a gateway should not follow (no
    user:password@, no query string, no fragment), inside `BUDDY_UPSTREAM_ALLOWED_NETWORKS` when
    that is set; or ValidationFailed.

    The one rule for every way an endpoint is set (the provisioner's callback, the local
    provisioner, an operator): a leaked provisioner token must not point the gateway, and the
    shared upstream key it sends, at an internal service.
    """
    message = "An absolute http(s) URL is required."
    if not isinstance(endpoint_url, str) or len(endpoint_url) > 500:
        raise ValidationFailed(fields={"endpoint_url": [message]})
    try:
        parts = urlsplit(endpoint_url)
        port = parts.port
    except ValueError:
        raise ValidationFailed(fields={"endpoint_url": [message]}) from None
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or any(ch.isspace() for ch in endpoint_url)
    ):
        raise ValidationFailed(fields={"endpoint_url": [message]})
    # The raw characters, not only what urlsplit files them under: `?` and `#` with nothing after
    # them, or an `@` in the authority, are refused too.
    if "@" in parts.netloc or "?" in endpoint_url or "#" in endpoint_url:
        raise ValidationFailed(
            fields={
                "endpoint_url": [
                    "The URL must not carry credentials (user@), a query string or a fragment."
                ]
            }
        )
    allowed = settings.BUDDY_UPSTREAM_ALLOWED_NETWORKS
    if allowed:
        default_port = 443 if parts.scheme == "https" else 80
        _require_allowed_address(parts.hostname, port or default_port, allowed)
    return endpoint_url.rstrip("/")


def _require_allowed_address(
    host: str, port: int, allowed: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> None:
    """Every address `host` resolves to lies in one of `allowed`, or ValidationFailed.

    Resolved by the system's resolver, which also reads the spellings an address check on the
    text would miss (`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`).
    """
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise ValidationFailed(
            fields={"endpoint_url": [f"The host {host!r} does not resolve."]}
        ) from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not any(address in network for network in allowed):
            raise ValidationFailed(
                fields={
                    "endpoint_url": [
                        f"The host resolves to {address}, outside the networks model servers "
                        "may be on (BUDDY_UPSTREAM_ALLOWED_NETWORKS)."
                    ]
                }
            )


def event_record(
    *, deployment: Deployment, kind: str, actor: str, detail: dict[str, Any] | None = None
) -> DeploymentEvent:
    """Append one event; call it inside the transaction that made the change it records."""
    return DeploymentEvent.objects.create(
        deployment=deployment, kind=kind, actor=actor, detail=detail or {}
    )


def _lock(deployment_id: object) -> Deployment:
    deployment = None
    if (pk := as_uuid(deployment_id)) is not None:
        deployment = Deployment.objects.select_for_update().filter(pk=pk).first()
    if deployment is None:
        raise NotFound("Deployment not found.")
    return deployment


def _pack_hours(template: Template, pack_hours: object) -> int:
    if (
        not isinstance(pack_hours, int)
        or isinstance(pack_hours, bool)
        or pack_hours not in template.pack_hours_options
    ):
        options = ", ".join(str(h) for h in template.pack_hours_options)
        raise ValidationFailed(fields={"pack_hours": [f"Must be one of: {options}."]})
    return pack_hours


def deployment_create(
    *, owner: AbstractBaseUser | AnonymousUser, template_slug: str, pack_hours: int, actor: str
) -> Deployment:
    template = Template.objects.filter(slug=template_slug, is_active=True).first()
    if template is None:
        raise ValidationFailed(fields={"template": ["No active template with this slug."]})
    hours = _pack_hours(template, pack_hours)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            owner=owner,  # type: ignore[misc]  # the console's authenticated user
            template=template,
            model_id=template.model_id,
            status=S.PENDING,
            pack_ends_at=timezone.now() + timedelta(hours=hours),
        )
        event_record(
            deployment=deployment,
            kind=_EVENT_OF_STATUS[S.PENDING],
            actor=actor,
            detail={"template": template.slug, "pack_hours": hours},
        )
        followups.after_created(deployment.pk)
    return deployment


def _refuse(current: str, target: str) -> InvalidTransition:
    return InvalidTransition(
        f"A deployment cannot go from {current} to {target}.", current=current, target=target
    )


def _transition(
    *, deployment_id: object, target: str, actor: str, endpoint_url: str | None = None
) -> Deployment:
    """A move between live statuses (ends go through `_end`)."""
    assert target not in TERMINAL_STATUSES, "an end goes through _end"
    with transaction.atomic():
        deployment = _lock(deployment_id)
        previous = deployment.status
        if not is_transition_allowed(previous, target):
            raise _refuse(previous, target)
        deployment.status = target
        fields = ["status", "updated_at"]
        if endpoint_url is not None:
            deployment.endpoint_url = endpoint_url
            fields.append("endpoint_url")
        deployment.save(update_fields=fields)
        event_detail = {"from": previous}
        if endpoint_url is not None:
            event_detail["endpoint_url"] = endpoint_url
        event_record(
            deployment=deployment,
            kind=_EVENT_OF_STATUS[target],
            actor=actor,
            detail=event_detail,
        )
        if target == S.READY:
            webhooks.deployment_ready(deployment.pk)
        followups.after_status_change(deployment.pk, previous=previous, current=target)
    return deployment


def _end(
    claimed: Sequence[tuple[uuid.UUID, str]],
    *,
    target: str,
    end_reason: str,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> datetime:
    """End these deployments for good: the one path of every end, one deployment or a batch.

    `claimed` are (id, current status) of rows the caller has locked in this transaction. Each move
    is checked against the table (nothing is written unless all are allowed), then one UPDATE,
    one multi-row INSERT of their events, and the follow-ups of an end: their keys revoked and the
    guards written before the commit (receivers of `deployments_ended`, in `keys`), one revocation
    (safety net) and one teardown message for all of them after it. Returns the time they ended.
    """
    for _pk, current in claimed:
        if not is_transition_allowed(current, target):
            raise _refuse(current, target)
    ids = [pk for pk, _ in claimed]
    ended_at = timezone.now()
    Deployment.objects.filter(pk__in=ids).update(
        status=target, ended_at=ended_at, end_reason=end_reason, updated_at=ended_at
    )
    DeploymentEvent.objects.bulk_create(
        DeploymentEvent(
            deployment_id=pk,
            kind=_EVENT_OF_STATUS[target],
            actor=actor,
            detail={"from": current, **(detail or {}), "end_reason": end_reason},
        )
        for pk, current in claimed
    )
    webhooks.deployments_ended(ids)
    followups.after_ended(ids, actor=actor)
    return ended_at


def _end_one(
    *,
    deployment_id: object,
    target: str,
    end_reason: str,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> Deployment:
    """End one deployment: `_end` of a list of one, its row locked (waiting for other writers)."""
    with transaction.atomic():
        deployment = _lock(deployment_id)
        ended_at = _end(
            [(deployment.pk, deployment.status)],
            target=target,
            end_reason=end_reason,
            actor=actor,
            detail=detail,
        )
    deployment.status = target
    deployment.ended_at = deployment.updated_at = ended_at
    deployment.end_reason = end_reason
    return deployment


def deployment_mark_provisioning(*, deployment_id: object, actor: str) -> Deployment:
    return _transition(deployment_id=deployment_id, target=S.PROVISIONING, actor=actor)


def deployment_begin_provisioning(*, deployment_id: object, actor: str) -> Deployment | None:
    """`pending` -> `provisioning` once the boot was asked for; no-op if it has moved on already
    (a fast provisioner may have reported `ready` before we got here)."""
    with transaction.atomic():
        deployment = _lock(deployment_id)
        if deployment.status != S.PENDING:
            return None
        return _transition(deployment_id=deployment.pk, target=S.PROVISIONING, actor=actor)


def deployment_mark_ready(*, deployment_id: object, endpoint_url: str, actor: str) -> Deployment:
    return _transition(
        deployment_id=deployment_id,
        target=S.READY,
        actor=actor,
        endpoint_url=validate_endpoint_url(endpoint_url),
    )


def deployment_stop(
    *, deployment_id: object, actor: str, end_reason: str = EndReason.STOPPED_BY_OWNER
) -> Deployment:
    return _end_one(
        deployment_id=deployment_id, target=S.STOPPED, actor=actor, end_reason=end_reason
    )


def deployment_fail(*, deployment_id: object, actor: str, reason: str = "") -> Deployment:
    return _end_one(
        deployment_id=deployment_id,
        target=S.FAILED,
        actor=actor,
        end_reason=EndReason.PROVISIONER_FAILED,
        detail={"reason": reason[:500]} if reason else None,
    )


def deployment_terminate(
    *, deployment_id: object, actor: str, end_reason: str = EndReason.TERMINATED_BY_OPERATOR
) -> Deployment:
    return _end_one(
        deployment_id=deployment_id, target=S.TERMINATED, actor=actor, end_reason=end_reason
    )


def deployment_extend(*, deployment_id: object, pack_hours: int, actor: str) -> Deployment:
    """Add a pack to a live deployment: same id, same keys, a later `pack_ends_at`.

    The hours are checked before the row is locked, so a bad body changes nothing; the status is
    checked under the lock, so an extension never revives a deployment that has just ended.
    A pack that has already run out but not yet been swept is extended from now, not from the past.
    """
    pk = as_uuid(deployment_id)
    template = None if pk is None else Template.objects.filter(deployments__pk=pk).first()
    if template is None:
        raise NotFound("Deployment not found.")
    hours = _pack_hours(template, pack_hours)
    with transaction.atomic():
        deployment = _lock(deployment_id)
        if deployment.status not in EXTENDABLE_STATUSES:
            raise InvalidTransition(
                f"A {deployment.status} deployment cannot be extended.",
                current=deployment.status,
            )
        previous_end = deployment.pack_ends_at
        now = timezone.now()
        if previous_end <= now:
            # Too late: the pack has ended; the sweep will terminate it. Extending it now would
            # revive keys that lookups have already refused.
            raise InvalidTransition("The pack has already ended.", current=deployment.status)
        deployment.pack_ends_at = previous_end + timedelta(hours=hours)
        deployment.save(update_fields=["pack_ends_at", "updated_at"])
        event_record(
            deployment=deployment,
            kind=EventKind.EXTENDED,
            actor=actor,
            detail={
                "pack_hours": hours,
                "from": previous_end.isoformat(),
                "to": deployment.pack_ends_at.isoformat(),
            },
        )
        webhooks.deployment_extended(deployment.pk)
        followups.after_changed(deployment.pk)
    return deployment


def deployment_apply_provisioner_status(
    *, deployment_id: object, status: str, endpoint_url: str | None, reason: str, actor: str
) -> Deployment:
    """What the provisioner reports, applied idempotently.

    Repeating the current status changes nothing, except that `ready` with a different endpoint
    moves the deployment to it (and lookups stop answering with the old one).
    """
    if status == S.READY:
        endpoint_url = validate_endpoint_url(endpoint_url)
    with transaction.atomic():
        deployment = _lock(deployment_id)
        if deployment.status != status:
            if status == S.READY:
                return deployment_mark_ready(
                    deployment_id=deployment.pk, endpoint_url=endpoint_url or "", actor=actor
                )
            if status == S.PROVISIONING:
                return deployment_mark_provisioning(deployment_id=deployment.pk, actor=actor)
            if status == S.FAILED:
                return deployment_fail(deployment_id=deployment.pk, actor=actor, reason=reason)
            if status == S.STOPPED:
                return _end_one(
                    deployment_id=deployment.pk,
                    target=S.STOPPED,
                    actor=actor,
                    end_reason=EndReason.STOPPED_BY_PROVISIONER,
                    detail={"reason": reason[:500]} if reason else None,
                )
            raise InvalidTransition(f"The provisioner cannot report {status}.")
        if status == S.READY and endpoint_url != deployment.endpoint_url:
            previous_url = deployment.endpoint_url
            deployment.endpoint_url = endpoint_url or ""
            deployment.save(update_fields=["endpoint_url", "updated_at"])
            event_record(
                deployment=deployment,
                kind=EventKind.READY,
                actor=actor,
                detail={"from": S.READY, "endpoint_url": endpoint_url, "previous": previous_url},
            )
            webhooks.deployment_ready(deployment.pk)
            followups.after_changed(deployment.pk)
        return deployment


def deployment_expire_batch(*, now: datetime | None = None, limit: int = 500) -> list[uuid.UUID]:
    """Terminate up to `limit` live deployments whose pack has ended; return their ids.

    Set-based, because a sweep may meet thousands at once: candidates are claimed with
    `FOR UPDATE SKIP LOCKED` through the partial index on live packs (two sweeps at once share
    the work instead of waiting on each other), then ended together by `_end`, as any other end.
    """
    with transaction.atomic():
        claimed = list(
            selectors.deployment_list_expired(now=now or timezone.now())
            .select_for_update(skip_locked=True)
            .values_list("pk", "status")[:limit]
        )
        if not claimed:
            return []
        _end(
            claimed,
            target=PACK_EXPIRED_STATUS,
            end_reason=EndReason.PACK_EXPIRED,
            actor="system:pack-expiry",
        )
    return [pk for pk, _ in claimed]


def deployment_notify_pack_ending(*, now: datetime | None = None, limit: int = 500) -> int:
    """Send `deployment.pack_ending` for live packs ending within
    `BUDDY_PACK_ENDING_NOTICE_SECONDS`, once per deployment and value of `pack_ends_at`, to owners
    who subscribe to it; returns how many notices this call stored.

    Each candidate's row is locked (skipping one another run holds), so the notice is for the
    end the deployment has at that moment, never for one a concurrent extension just moved; the
    notice's dedupe key keeps concurrent or repeated runs to one notice per end.
    """
    now = now or timezone.now()
    candidates = dict.fromkeys(
        selectors.deployment_list_pack_ending(
            now=now, within_seconds=settings.BUDDY_PACK_ENDING_NOTICE_SECONDS
        )
        .filter(owner__webhook_endpoints__is_active=True)
        .values_list("pk", "pack_ends_at")[:limit]
    )
    sent = 0
    for pk, pack_ends_at in candidates:
        if webhooks.pack_ending_sent(pk, pack_ends_at):
            continue
        with transaction.atomic():
            deployment = (
                selectors.deployment_list_pack_ending(
                    now=now, within_seconds=settings.BUDDY_PACK_ENDING_NOTICE_SECONDS
                )
                .select_for_update(skip_locked=True)
                .filter(pk=pk)
                .first()
            )
            if deployment is not None and webhooks.deployment_pack_ending(deployment):
                sent += 1
    return sent


# --- operators (the admin) ----------------------------------------------------------------------


def _finish_end_now(*, deployment_id: object, actor: str) -> None:
    signals.deployments_end_finish_requested.send(
        sender=Deployment, deployment_ids=[deployment_id], actor=actor
    )


def deployment_stop_by_operator(*, deployment_id: object, actor: str) -> Deployment:
    """An operator's stop: the same transition as any stop, then every key revoked at once (by
    the receiver of `deployments_end_finish_requested`, in `keys`).

    The revocation that every end schedules (`keys.revoke_for_deployments`, after the commit) still
    runs and finds nothing left to do. Doing it here too means the operator sees the keys revoked
    when the page comes back, whether or not a worker is running; the admin is low-volume, so the
    few milliseconds per key this costs the request do not matter.
    """
    deployment = deployment_stop(
        deployment_id=deployment_id, actor=actor, end_reason=EndReason.STOPPED_BY_OPERATOR
    )
    _finish_end_now(deployment_id=deployment.pk, actor=actor)
    return deployment


def deployment_terminate_by_operator(*, deployment_id: object, actor: str) -> Deployment:
    """An operator's termination, its keys revoked at once (see `deployment_stop_by_operator`)."""
    deployment = deployment_terminate(
        deployment_id=deployment_id, actor=actor, end_reason=EndReason.TERMINATED_BY_OPERATOR
    )
    _finish_end_now(deployment_id=deployment.pk, actor=actor)
    return deployment


# --- what the provisioner owes (reconciliation) -------------------------------------------------


def deployment_mark_torn_down(*, deployment_id: object) -> bool:
    """Record that the provisioner took an ended deployment's instance down; False if it was
    already recorded (a repeated teardown) or the deployment is not ended."""
    pk = as_uuid(deployment_id)
    if pk is None:
        return False
    return (
        Deployment.objects.filter(
            pk=pk, status__in=list(TERMINAL_STATUSES), torn_down_at__isnull=True
        ).update(torn_down_at=timezone.now())
        == 1
    )


def deployment_reconcile(
    *, stale_after: timedelta, batch_size: int = 200, now: Any = None
) -> dict[str, int]:
    """Ask the provisioner again for what a lost message may have left undone.

    - a deployment still `pending` long after its creation: its boot was never asked for (the
      provision message was lost) or gave up without failing it; ask again (the task is a no-op
      unless it is still pending, and the orchestrator treats a repeated boot of one deployment
      id as the same instance);
    - an ended deployment whose teardown was never confirmed: ask for the teardown again.

    With the `none` provisioner nobody is asked, so nothing is owed.
    """
    now = now or timezone.now()
    if settings.BUDDY_PROVISIONER == "none":
        return {"boots_asked_again": 0, "teardowns_asked_again": 0}
    stuck = list(
        Deployment.objects.filter(status=S.PENDING, created_at__lte=now - stale_after)
        .order_by("created_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    owed = list(
        Deployment.objects.filter(
            status__in=list(TERMINAL_STATUSES),
            torn_down_at__isnull=True,
            ended_at__lte=now - stale_after,
        )
        .order_by("ended_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    followups.reprovision(stuck)
    followups.teardown_again(owed)
    return {"boots_asked_again": len(stuck), "teardowns_asked_again": len(owed)}
