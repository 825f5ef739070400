"""The usage pipeline below the HTTP layer, on the real PostgreSQL and Redis: the process's
recorder -> Redis' hourly hashes -> the flush (claim, upsert, delete) -> hourly rows -> the fold
into daily rows; batches applied once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from buddy.usage import buffer, services
from buddy.usage.buffer import Count, recorder
from buddy.usage.models import AppliedBatch, UsageDaily, UsageHourly
from buddy.usage.selectors import usage_24h_for_keys, usage_series
from tests.harness.processes import ROOT, subprocess_env

KEY = str(uuid.uuid4())
OTHER_KEY = str(uuid.uuid4())
DEPLOYMENT = str(uuid.uuid4())


def hourly() -> dict[tuple[str, datetime], tuple[int, int, int]]:
    return {
        (str(row.key_id), row.hour): (row.requests, row.prompt_tokens, row.completion_tokens)
        for row in UsageHourly.objects.all()
    }


def this_hour() -> datetime:
    return datetime.fromtimestamp(buffer.hour_of(timezone.now().timestamp()), tz=UTC)


@pytest.fixture(autouse=True)
def _empty_recorder():
    recorder.take()
    yield
    recorder.take()


@pytest.mark.django_db
def test_recorded_completions_reach_the_hourly_rollup_through_redis_once():
    recorder.record(KEY, DEPLOYMENT, 3, 4)
    recorder.record(KEY, DEPLOYMENT, 5, 6)
    recorder.record(OTHER_KEY, DEPLOYMENT, 0, 0)
    assert recorder.flush() == 2  # summed per key and hour in the process
    assert hourly() == {}  # nothing reaches the database before the flush

    done = services.usage_flush()

    assert done["hashes"] == 1
    assert hourly() == {(KEY, this_hour()): (2, 8, 10), (OTHER_KEY, this_hour()): (1, 0, 0)}
    assert services.usage_flush() == {"hashes": 0, "rows": 0, "already_applied": 0}
    assert hourly()[(KEY, this_hour())] == (2, 8, 10)


@pytest.mark.django_db
def test_later_flushes_add_to_the_hours_rows():
    for _ in range(3):
        recorder.record(KEY, DEPLOYMENT, 1, 2)
        recorder.flush()
        services.usage_flush()
    assert hourly() == {(KEY, this_hour()): (3, 3, 6)}


@pytest.mark.django_db
def test_the_recorder_keeps_its_counts_while_redis_cannot_answer(settings):
    from buddy.core.redis import client

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    client.cache_clear()
    try:
        recorder.record(KEY, DEPLOYMENT, 1, 1)
        assert recorder.flush() == 0
    finally:
        settings.REDIS_URL = os.environ["REDIS_URL"]
        client.cache_clear()
    recorder.record(KEY, DEPLOYMENT, 1, 1)
    assert recorder.flush() == 1
    services.usage_flush()
    assert hourly() == {(KEY, this_hour()): (2, 2, 2)}


@pytest.mark.django_db
def test_the_same_batch_applied_twice_counts_once():
    counts = [Count(KEY, DEPLOYMENT, buffer.hour_of(0), 1, 2, 3)]
    assert services.usage_apply(name="proxy:b1", counts=counts, accepted=1) == (True, 1)
    assert services.usage_apply(name="proxy:b1", counts=counts, accepted=9) == (False, 1)
    assert hourly() == {(KEY, datetime(1970, 1, 1, tzinfo=UTC)): (1, 2, 3)}


_KILLED_FLUSH = textwrap.dedent(
    """
    import os, signal, django
    django.setup()
    from buddy.usage import buffer, services

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    stage = os.environ["KILL_AT"]
    if stage == "before_upsert":
        services._upsert = die
    elif stage == "before_delete":
        buffer.buffer_drop_claimed = die
    services.usage_flush()
    """
)


@pytest.mark.parametrize("stage", ["before_upsert", "before_delete"])
@pytest.mark.django_db(transaction=True)
def test_a_flush_killed_midway_then_run_again_leaves_every_count_exact(stage):
    """The flush dies (SIGKILL, in a process of its own) after claiming the hour's hash: before
    its upsert, or after its commit and before deleting the claimed hash. Meanwhile more usage
    arrives. The next flush finishes the claimed hash and the new one: every count exact."""
    recorder.record(KEY, DEPLOYMENT, 10, 20)
    recorder.record(OTHER_KEY, DEPLOYMENT, 1, 1)
    recorder.flush()

    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_FLUSH],
        env=subprocess_env(KILL_AT=stage),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert buffer.client().smembers(buffer.CLAIMED_SET), "the claimed hash outlives the kill"
    expected_rows = 2 if stage == "before_delete" else 0
    assert UsageHourly.objects.count() == expected_rows

    recorder.record(KEY, DEPLOYMENT, 100, 200)  # arrives while the claim is pending
    recorder.flush()
    done = services.usage_flush()

    assert done["hashes"] == 2
    assert done["already_applied"] == (1 if stage == "before_delete" else 0)
    assert hourly() == {(KEY, this_hour()): (2, 110, 220), (OTHER_KEY, this_hour()): (1, 1, 1)}
    assert not buffer.client().smembers(buffer.CLAIMED_SET)
    assert services.usage_flush()["hashes"] == 0


@pytest.mark.django_db
def test_the_fold_moves_old_hours_into_their_days_exactly_and_once():
    key, dep = uuid.uuid4(), uuid.uuid4()
    old_day = datetime(2026, 1, 10, tzinfo=UTC)
    for hour, counts in [(1, (1, 10, 100)), (23, (2, 20, 200))]:
        UsageHourly.objects.create(
            key_id=key, deployment_id=dep, hour=old_day + timedelta(hours=hour),
            requests=counts[0], prompt_tokens=counts[1], completion_tokens=counts[2],
        )  # fmt: skip
    recent = UsageHourly.objects.create(
        key_id=key, deployment_id=dep, hour=this_hour(), requests=5, prompt_tokens=5
    )
    UsageDaily.objects.create(
        key_id=key, deployment_id=dep, day=old_day.date(), requests=1, prompt_tokens=1
    )
    before = services.hourly_cutoff(now=timezone.now(), retention_days=90)

    assert services.usage_fold_hourly(before=before, batch_size=1) == 2
    assert services.usage_fold_hourly(before=before) == 0

    day = UsageDaily.objects.get(key_id=key, day=old_day.date())
    assert (day.requests, day.prompt_tokens, day.completion_tokens) == (4, 31, 300)
    assert list(UsageHourly.objects.values_list("pk", flat=True)) == [recent.pk]
    # The day still reads the same, from its daily row.
    series = usage_series(
        key_id=key,
        granularity="day",
        since=old_day - timedelta(days=1),
        until=old_day + timedelta(days=2),
    )
    assert [(b.start, b.requests, b.total_tokens) for b in series.buckets] == [(old_day, 4, 331)]


def test_the_cutoff_keeps_whole_utc_days():
    now = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)
    assert services.hourly_cutoff(now=now, retention_days=90) == datetime(2026, 9, 4, tzinfo=UTC)


@pytest.mark.django_db
def test_batches_are_forgotten_after_24_hours():
    now = timezone.now()
    AppliedBatch.objects.create(name="proxy:old", applied_at=now - timedelta(hours=25))
    AppliedBatch.objects.create(name="proxy:new", applied_at=now - timedelta(hours=23))
    assert services.usage_forget_batches(now=now) == 1
    assert list(AppliedBatch.objects.values_list("name", flat=True)) == ["proxy:new"]


@pytest.mark.django_db
def test_hour_and_day_series_are_utc_aligned_oldest_first_with_traffic_only():
    key, dep = uuid.uuid4(), uuid.uuid4()
    base = datetime(2026, 11, 30, 22, tzinfo=UTC)
    for hours, requests in [(0, 1), (1, 2), (3, 4)]:  # 22:00, 23:00, 01:00 next day
        UsageHourly.objects.create(
            key_id=key, deployment_id=dep, hour=base + timedelta(hours=hours),
            requests=requests, prompt_tokens=requests, completion_tokens=requests * 10,
        )  # fmt: skip
    UsageHourly.objects.create(key_id=uuid.uuid4(), deployment_id=dep, hour=base, requests=7)

    hours = usage_series(
        key_id=key,
        granularity="hour",
        since=base + timedelta(minutes=30),
        until=base + timedelta(hours=4),
    )
    assert [(b.start.hour, b.requests) for b in hours.buckets] == [(22, 1), (23, 2), (1, 4)]
    assert hours.totals.as_dict() == {
        "requests": 7, "prompt_tokens": 7, "completion_tokens": 70, "total_tokens": 77
    }  # fmt: skip
    days = usage_series(
        deployment_id=dep, granularity="day", since=base, until=base + timedelta(days=1)
    )
    assert [(b.start, b.requests) for b in days.buckets] == [
        (datetime(2026, 11, 30, tzinfo=UTC), 10),
        (datetime(2026, 12, 1, tzinfo=UTC), 4),
    ]


@pytest.mark.django_db
def test_usage_24h_of_many_keys_is_one_query(django_assert_num_queries):
    keys = [uuid.uuid4() for _ in range(5)]
    for key in keys[:3]:
        UsageHourly.objects.create(
            key_id=key, deployment_id=uuid.uuid4(), hour=this_hour(), requests=2,
            prompt_tokens=3, completion_tokens=4,
        )  # fmt: skip
    UsageHourly.objects.create(
        key_id=keys[0],
        deployment_id=uuid.uuid4(),
        hour=this_hour() - timedelta(hours=24),
        requests=50,
    )
    with django_assert_num_queries(1):
        found = usage_24h_for_keys(key_ids=keys)
    assert {k: (t.requests, t.total_tokens) for k, t in found.items()} == {
        key: (2, 7) for key in keys[:3]
    }


@pytest.mark.django_db(transaction=True)
def test_flushes_running_at_once_count_every_hash_once():
    from tests.harness.threads import run_concurrently

    for i in range(5):
        recorder.record(KEY, DEPLOYMENT, i, 1)
        recorder.flush()
        buffer.client().eval(  # claim, as a flush that then died would have left it
            buffer._CLAIM, 2, buffer.HOURS_SET, buffer.CLAIMED_SET, buffer.HOUR_HASH,
            buffer.CLAIMED_HASH, f"crashed{i}",
        )  # fmt: skip
    results = run_concurrently(lambda _i: services.usage_flush(), 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r["hashes"] - r["already_applied"] for r in results) == 5
    assert hourly() == {(KEY, this_hour()): (5, 10, 5)}


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_applied_from_many_threads_at_once_counts_once():
    from tests.harness.threads import run_concurrently

    counts = [Count(KEY, DEPLOYMENT, buffer.hour_of(0), 1, 2, 3)]
    results = run_concurrently(
        lambda _i: services.usage_apply(name="proxy:race", counts=counts, accepted=1), 6
    )
    assert sorted(r[0] for r in results) == [False] * 5 + [True]
    assert {r[1] for r in results} == {1}
    assert hourly() == {(KEY, datetime(1970, 1, 1, tzinfo=UTC)): (1, 2, 3)}
