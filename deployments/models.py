from __future__ import annotations

import uuid

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


TERMINAL_STATUSES = frozenset(
    {DeploymentStatus.STOPPED, DeploymentStatus.FAILED, DeploymentStatus.TERMINATED}
)
LIVE_STATUSES = frozenset(
    {DeploymentStatus.PENDING, DeploymentStatus.PROVISIONING, DeploymentStatus.READY}
)


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
                condition=models.Q(status__in=["pending", "provisioning", "ready"]),
            ),
            models.Index(fields=["owner", "-created_at"], name="deploy_owner_created_idx"),
            models.Index(fields=["status"], name="deployment_status_idx"),
            # The reconciler: ended deployments whose teardown is still owed.
            models.Index(
                fields=["ended_at"],
                name="deploy_teardown_owed_idx",
                condition=models.Q(
                    status__in=["stopped", "failed", "terminated"], torn_down_at__isnull=True
                ),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="ready") | ~models.Q(endpoint_url=""),
                name="deployment_ready_has_endpoint",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


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
