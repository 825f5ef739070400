"""Reads of usage: series of hour or day buckets for a key or a deployment, and the last 24 hours
of many keys in one query (for pages of keys)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from buddy.usage.models import UsageDaily, UsageHourly

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(slots=True)
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, requests: int, prompt_tokens: int, completion_tokens: int) -> None:
        self.requests += requests or 0
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class Bucket(Totals):
    start: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))


@dataclass(slots=True)
class UsageSeries:
    granularity: str
    since: datetime
    until: datetime
    totals: Totals
    buckets: list[Bucket]


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _sums(rows: QuerySet[Any], by: str) -> Iterator[tuple[Any, int, int, int]]:
    """(value of `by`, requests, prompt tokens, completion tokens) summed per value of `by`."""
    summed: Any = (
        rows.values(by)
        .annotate(r=Sum("requests"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
        .order_by()
    )
    for row in summed:
        yield row[by], row["r"] or 0, row["p"] or 0, row["c"] or 0


def usage_series(
    *,
    granularity: str,
    since: datetime,
    until: datetime,
    key_id: uuid.UUID | None = None,
    deployment_id: uuid.UUID | None = None,
) -> UsageSeries:
    """The usage of one key (or of every key of one deployment) in UTC-aligned buckets of an hour
    or a day: the buckets that start in [since floored to its bucket, until), oldest first, only
    those with traffic; totals over those buckets.

    Hours come from the hourly rows (kept `BUDDY_USAGE_HOURLY_RETENTION_DAYS`); days from the
    daily rows (hours past the retention, folded) plus the hourly rows summed by UTC day."""
    assert (key_id is None) != (deployment_id is None), "one key or one deployment"
    whose = Q(key_id=key_id) if key_id is not None else Q(deployment_id=deployment_id)
    sums: dict[datetime, Bucket] = {}

    def add(start: datetime, r: int, p: int, c: int) -> None:
        bucket = sums.get(start)
        if bucket is None:
            bucket = sums[start] = Bucket(start=start)
        bucket.add(r, p, c)

    if granularity == "hour":
        hourly = UsageHourly.objects.filter(whose, hour__gte=floor_hour(since), hour__lt=until)
        for hour, r, p, c in _sums(hourly, "hour"):
            add(hour.astimezone(UTC), r, p, c)
    else:
        first = floor_day(since)
        hourly = UsageHourly.objects.filter(whose, hour__gte=first, hour__lt=until)
        for hour, r, p, c in _sums(hourly, "hour"):
            add(floor_day(hour), r, p, c)
        daily = UsageDaily.objects.filter(whose, day__gte=first.date(), day__lt=_day_after(until))
        for day, r, p, c in _sums(daily, "day"):
            start = _midnight(day)
            if start < until:
                add(start, r, p, c)
    buckets = [sums[s] for s in sorted(sums) if sums[s].requests or sums[s].total_tokens]
    totals = Totals()
    for bucket in buckets:
        totals.add(bucket.requests, bucket.prompt_tokens, bucket.completion_tokens)
    return UsageSeries(granularity, since, until, totals, buckets)


def _day_after(at: datetime) -> date:
    return (floor_day(at) + DAY).date()


def last_24h_start(now: datetime | None = None) -> datetime:
    """The start of the last 24 hours as usage counts them: the current hour and the 23 before."""
    return floor_hour(now or timezone.now()) - 23 * HOUR


def usage_24h_for_keys(*, key_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Totals]:
    """Each key's usage in the last 24 hours, in one query (keys without any are absent)."""
    ids = list(key_ids)
    if not ids:
        return {}
    recent = UsageHourly.objects.filter(key_id__in=ids, hour__gte=last_24h_start())
    return {key_id: Totals(r, p, c) for key_id, r, p, c in _sums(recent, "key_id")}
