from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def _validate_pack_hours_options(value: object) -> None:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in value)
    ):
        raise ValidationError(
            "A non-empty list of positive whole numbers of hours, e.g. [1, 8, 24]."
        )


class Template(models.Model):
    """A deployable model, offered for packs of the listed lengths."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    model_id = models.CharField(max_length=200)
    pack_hours_options = models.JSONField(default=list, validators=[_validate_pack_hours_options])
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.model_id})"


class DeploymentStatus(models.TextChoices):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    READY = "ready"
    STOPPED = "stopped"
    FAILED = "failed"
    TERMINATED = "terminated"


class EventKind(models.TextChoices):
    CREATED = "created"
    PROVISIONING = "provisioning"
    READY = "ready"
    EXTENDED = "extended"
    STOPPED = "stopped"
    FAILED = "failed"
    TERMINATED = "terminated"
    KEY_CREATED = "key_created"
    KEY_REVEALED = "key_revealed"
    KEY_REVOKED = "key_revoked"
    KEY_ROLLED = "key_rolled"
    KEY_UPDATED = "key_updated"
    KEY_LEAKED = "key_leaked"


@dataclass(frozen=True, slots=True)
class StatusSpec:
    """What one status means: the event that records entering it, where it may go, whether it
    has ended (for good: nothing leaves it), whether it serves (its keys are answered with its
    endpoint), whether its pack can be extended, and the code of its end, which is the revoke
    reason of its keys and the lookup's 409 code."""

    event: EventKind
    goes_to: frozenset[DeploymentStatus] = frozenset()
    ended: bool = False
    serves: bool = False
    extendable: bool = False
    end_code: str = ""


_S = DeploymentStatus
_ENDS = frozenset({_S.STOPPED, _S.FAILED, _S.TERMINATED})

# The status diagram of the contract, and everything else a status means. Every status set and
# map of the code (the transition table, the events, the revoke reasons, the lookup's answers,
# the partial indexes below) is derived from this table.
STATUS_SPEC: Mapping[str, StatusSpec] = MappingProxyType(
    {
        _S.PENDING: StatusSpec(
            event=EventKind.CREATED,
            goes_to=frozenset({_S.PROVISIONING, _S.READY}) | _ENDS,
            extendable=True,
        ),
        _S.PROVISIONING: StatusSpec(
            event=EventKind.PROVISIONING,
            goes_to=frozenset({_S.READY}) | _ENDS,
            extendable=True,
        ),
        _S.READY: StatusSpec(
            event=EventKind.READY,
            goes_to=frozenset({_S.PROVISIONING}) | _ENDS,
            serves=True,
            extendable=True,
        ),
        _S.STOPPED: StatusSpec(event=EventKind.STOPPED, ended=True, end_code="deployment_stopped"),
        _S.FAILED: StatusSpec(event=EventKind.FAILED, ended=True, end_code="deployment_failed"),
        _S.TERMINATED: StatusSpec(
            event=EventKind.TERMINATED, ended=True, end_code="deployment_terminated"
        ),
    }
)


def statuses_where(predicate: Callable[[StatusSpec], bool]) -> tuple[DeploymentStatus, ...]:
    """The statuses whose spec satisfies `predicate`, in the order of `DeploymentStatus`."""
    return tuple(status for status in DeploymentStatus if predicate(STATUS_SPEC[status]))


TERMINAL_STATUSES = frozenset(statuses_where(lambda spec: spec.ended))
LIVE_STATUSES = frozenset(statuses_where(lambda spec: not spec.ended))
SERVING_STATUSES = frozenset(statuses_where(lambda spec: spec.serves))
# What the expiry sweep makes of a live deployment whose pack has ended (and so what a lookup
# answers for it from the moment the pack ends, swept or not).
PACK_EXPIRED_STATUS = DeploymentStatus.TERMINATED
# The partial indexes' conditions, as plain values in a fixed order (a migration compares them).
_LIVE_IN_ORDER = [status.value for status in statuses_where(lambda spec: not spec.ended)]
_ENDED_IN_ORDER = [status.value for status in statuses_where(lambda spec: spec.ended)]


class EndReason(models.TextChoices):
    STOPPED_BY_OWNER = "stopped_by_owner"
    STOPPED_BY_OPERATOR = "stopped_by_operator"
    STOPPED_BY_PROVISIONER = "stopped_by_provisioner"
    PROVISIONER_FAILED = "provisioner_failed"
    PACK_EXPIRED = "pack_expired"
    TERMINATED_BY_OPERATOR = "terminated_by_operator"


class Deployment(models.Model):
    """One running copy of a template for one owner, paid up to `pack_ends_at`.

    `status` is written only by `deployments.services` (one transition table, row lock, event).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deployments"
    )
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="deployments")
    model_id = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING
    )
    endpoint_url = models.URLField(max_length=500, blank=True, default="")
    pack_ends_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True, default="")
    # When the provisioner confirmed the ended instance's teardown; null while it is owed, so the
    # reconciler can ask again after a lost message.
    torn_down_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The expiry sweep: live deployments whose pack has ended, oldest first.
            models.Index(
                fields=["pack_ends_at"],
                name="deploy_live_pack_end_idx",
                condition=models.Q(status__in=_LIVE_IN_ORDER),
            ),
            models.Index(fields=["owner", "-created_at"], name="deploy_owner_created_idx"),
            models.Index(fields=["status"], name="deployment_status_idx"),
            # The reconciler: ended deployments whose teardown is still owed.
            models.Index(
                fields=["ended_at"],
                name="deploy_teardown_owed_idx",
                condition=models.Q(status__in=_ENDED_IN_ORDER, torn_down_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status=DeploymentStatus.READY.value)
                | ~models.Q(endpoint_url=""),
                name="deployment_ready_has_endpoint",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class DeploymentEvent(models.Model):
    """Append-only history of a deployment: who or what did what, and when."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    detail = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=200)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["deployment", "-at"], name="event_deployment_at_idx")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} by {self.actor}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("Deployment events are append-only")
        super().save(*args, **kwargs)
