"""Usage of keys: requests and tokens per key and UTC hour (and, past the hourly retention, per
UTC day), and the batches already applied to them.

Keys and deployments are referred to by id, not by foreign key: usage is history (it outlives a
deleted deployment), this app sits below `keys` (which shows it), and its writes must never wait
on a lock of a key row.
"""

from __future__ import annotations

from django.db import models


class UsageHourly(models.Model):
    """One key's usage in one UTC hour (`hour` is the hour's start)."""

    key_id = models.UUIDField()
    deployment_id = models.UUIDField()
    hour = models.DateTimeField()
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "usage (hourly)"
        verbose_name_plural = "usage (hourly)"
        constraints = [
            models.UniqueConstraint(fields=["key_id", "hour"], name="usage_hourly_key_hour")
        ]
        indexes = [
            models.Index(fields=["deployment_id", "hour"], name="usage_hourly_dep_hour"),
            models.Index(fields=["hour"], name="usage_hourly_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.key_id} @ {self.hour:%Y-%m-%d %H}:00"


class UsageDaily(models.Model):
    """One key's usage in one UTC day: hourly rows older than the retention, folded."""

    key_id = models.UUIDField()
    deployment_id = models.UUIDField()
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "usage (daily)"
        verbose_name_plural = "usage (daily)"
        constraints = [
            models.UniqueConstraint(fields=["key_id", "day"], name="usage_daily_key_day")
        ]
        indexes = [models.Index(fields=["deployment_id", "day"], name="usage_daily_dep_day")]

    def __str__(self) -> str:
        return f"{self.key_id} @ {self.day}"


class AppliedBatch(models.Model):
    """A batch of counts already added to the rollup, written in the same transaction as its
    counts: a batch applied again (a flush re-run after a crash, a proxy's retry) is recognised
    and skipped. `name` is `flush:<claimed hash>` or `proxy:<batch_id>`; rows are purged after
    24 h (the proxy's idempotency window)."""

    name = models.CharField(max_length=100, unique=True)
    accepted = models.IntegerField(default=0)
    applied_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.name
