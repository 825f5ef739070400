"""Writes of usage: counts added to the hourly rollup (one upsert per row, inside the transaction
that records the batch they came in, so that a batch is counted once), the flush of Redis' buffer,
and the fold of old hourly rows into daily rows."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from buddy.usage import buffer
from buddy.usage.buffer import Count
from buddy.usage.models import AppliedBatch, UsageDaily, UsageHourly

logger = logging.getLogger(__name__)

BATCH_MEMORY = timedelta(hours=24)
_ROWS_PER_STATEMENT = 500
_UPSERT = (
    "INSERT INTO {table} (key_id, deployment_id, {period}, requests, prompt_tokens, "
    "completion_tokens) VALUES {values} "
    "ON CONFLICT (key_id, {period}) DO UPDATE SET "
    "requests = {table}.requests + excluded.requests, "
    "prompt_tokens = {table}.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = {table}.completion_tokens + excluded.completion_tokens"
)


def _upsert(model: type[Model], period: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`INSERT … ON CONFLICT (key_id, <period>) DO UPDATE` adding the counts: one row, one upsert
    (rows sorted by key and period, summed beforehand: no row is touched twice, and concurrent
    writers lock rows in one order)."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    fields: list[Any] = [model._meta.get_field(n) for n in ("key_id", "deployment_id", period)]
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        params: list[Any] = []
        for row in chunk:
            ids_and_period = zip(fields, row[:3], strict=True)
            params.extend(f.get_db_prep_value(v, connection) for f, v in ids_and_period)
            params.extend(row[3:])
        # Names are the model's own; every value is a parameter.
        values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
        sql = _UPSERT.format(table=table, period=period, values=values)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _summed(counts: Iterable[Count]) -> list[tuple[Any, ...]]:
    sums: dict[tuple[str, int], list[Any]] = {}
    for c in counts:
        row = sums.setdefault((c.key_id, c.hour), [c.deployment_id, 0, 0, 0])
        row[1] += c.requests
        row[2] += c.prompt_tokens
        row[3] += c.completion_tokens
    return [
        (uuid.UUID(key_id), uuid.UUID(row[0]), datetime.fromtimestamp(hour, tz=UTC), *row[1:])
        for (key_id, hour), row in sorted(sums.items())
    ]


def usage_apply(*, name: str, counts: Sequence[Count], accepted: int = 0) -> tuple[bool, int]:
    """Add `counts` to the hourly rollup once for the batch `name`: (True, accepted) when they
    were added now, (False, the accepted of the first time) when the batch was already applied.

    THE one place counts reach the database (the gateway's flushed buffer and the proxy's batches
    both come here)."""
    try:
        with transaction.atomic():
            AppliedBatch.objects.create(name=name, accepted=accepted, applied_at=timezone.now())
            _upsert(UsageHourly, "hour", _summed(counts))
    except IntegrityError:
        # Our batch row's unique name is taken: applied before (or by a concurrent call, whose
        # commit we waited for).
        first = AppliedBatch.objects.filter(name=name).first()
        if first is None:
            raise
        return False, first.accepted
    return True, accepted


def usage_flush() -> dict[str, int]:
    """Move Redis' buffer into the hourly rollup: claim every hour's counts, apply each claimed
    hash as the batch of its (unique) name, delete it. A run that dies anywhere is finished by
    the next run without counting twice (the batch row says what was applied)."""
    done = {"hashes": 0, "rows": 0, "already_applied": 0}
    for name in buffer.buffer_claim():
        counts = buffer.buffer_read_claimed(name)
        batch = f"flush:{name.removeprefix(buffer.CLAIMED_HASH)}"
        applied, _ = usage_apply(name=batch, counts=counts)
        done["hashes"] += 1
        done["rows"] += len(counts) if applied else 0
        done["already_applied"] += 0 if applied else 1
        buffer.buffer_drop_claimed(name)
    return done


def hourly_cutoff(*, now: datetime, retention_days: int) -> datetime:
    """Hourly rows before this (a UTC midnight) are folded into daily rows: whole days only."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=retention_days)


def usage_fold_hourly(*, before: datetime, batch_size: int = 5000) -> int:
    """Fold hourly rows older than `before` into daily rows: each batch adds its rows to their
    days and deletes them in one transaction (exact, and running it again finds nothing).
    Returns how many hourly rows were folded."""
    folded = 0
    while True:
        with transaction.atomic():
            rows = list(
                UsageHourly.objects.select_for_update(skip_locked=True)
                .filter(hour__lt=before)
                .order_by("hour", "key_id")[:batch_size]
            )
            if not rows:
                return folded
            days: dict[tuple[uuid.UUID, date], list[Any]] = {}
            for row in rows:
                day = row.hour.astimezone(UTC).date()
                sums = days.setdefault((row.key_id, day), [row.deployment_id, 0, 0, 0])
                sums[1] += row.requests
                sums[2] += row.prompt_tokens
                sums[3] += row.completion_tokens
            _upsert(
                UsageDaily,
                "day",
                [(key_id, s[0], day, *s[1:]) for (key_id, day), s in sorted(days.items())],
            )
            UsageHourly.objects.filter(pk__in=[row.pk for row in rows]).delete()
            folded += len(rows)


def usage_forget_batches(*, now: datetime) -> int:
    """Forget applied batches older than 24 h (a proxy's batch id is idempotent for 24 h)."""
    deleted, _ = AppliedBatch.objects.filter(applied_at__lt=now - BATCH_MEMORY).delete()
    return deleted
