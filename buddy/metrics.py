"""Prometheus metrics of buddy, served at `/metrics`.

Three sources, chosen so that every web worker answers a scrape with the same, whole numbers:

- **Lookups** (count by outcome, latency histogram) happen in the web processes. gunicorn runs
  several of them, so with `PROMETHEUS_MULTIPROC_DIR` set (the container image sets it) the
  counters live in prometheus-client's multiprocess files and any worker's scrape sums them all.
  Without it (the embedded default, tests) they live in this process.
- **Keys created and revoked, deployments by status** are read from PostgreSQL at scrape time.
  Key rows are never deleted, so their counts only grow and are true counters; the database is
  the record of truth, so no process restart or lost increment can make them drift.
- **Task failures** happen in the Celery worker, another process (often another container): the
  `task_failure` signal increments a hash in Redis, read at scrape time. A Redis restart resets it,
  which Prometheus' `rate()` treats as a counter reset. Without Redis (embedded default: tasks run
  in the web process) they are counted in this process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from functools import cache, wraps
from typing import Any, ParamSpec, Protocol

# In multiprocess mode every metric writes to a file there from its creation on: make sure the
# directory exists in whatever process imports this (web worker, Celery worker, a shell).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

P = ParamSpec("P")

# The metrics of this process (or, in multiprocess mode, of all web processes via their files).
PROCESS_REGISTRY = CollectorRegistry()

LOOKUPS = Counter(
    "buddy_lookups",
    "Key lookups answered, by outcome (`ok` or the contract's error code).",
    ["outcome"],
    registry=PROCESS_REGISTRY,
)
LOOKUP_SECONDS = Histogram(
    "buddy_lookup_duration_seconds",
    "Time to answer a key lookup (cache hits take well under a millisecond, argon2 misses more).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=PROCESS_REGISTRY,
)
# Used only without Redis (embedded default), where tasks run in this process; not registered,
# `StateCollector` exposes it in place of the Redis-held counts.
_LOCAL_TASK_FAILURES = Counter(
    "buddy_task_failures",
    "Celery tasks that failed for good (after their retries), by task name.",
    ["task"],
    registry=None,
)

TASK_FAILURES_KEY = "buddy:metrics:task_failures"
OTHER_OUTCOME = "other"


@cache
def _known_outcomes() -> frozenset[str]:
    from keys.selectors import LookupOutcome

    return frozenset(outcome.code or "ok" for outcome in LookupOutcome)


def outcome_label(outcome_code: str) -> str:
    """The label of an outcome: `ok`, a contract error code, or `other` (bounded cardinality)."""
    label = outcome_code or "ok"
    return label if label in _known_outcomes() else OTHER_OUTCOME


def record_lookup(outcome_code: str, seconds: float) -> None:
    """Count one answered lookup (`""` or `"ok"` for a 200, else its error code) and its time."""
    LOOKUPS.labels(outcome=outcome_label(outcome_code)).inc()
    LOOKUP_SECONDS.observe(max(seconds, 0.0))


class _HasOutcome(Protocol):
    @property
    def outcome(self) -> Any: ...


def observe_lookup(fn: Callable[P, _HasOutcome]) -> Callable[P, _HasOutcome]:
    """Wrap a lookup (e.g. `keys.selectors.key_lookup`) so each call is counted and timed.

    The view then calls `observe_lookup(key_lookup)(authorization=..., model=...)`, or binds the
    wrapped function once at import.
    """

    @wraps(fn)
    def observed(*args: P.args, **kwargs: P.kwargs) -> _HasOutcome:
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        record_lookup(result.outcome.code, time.perf_counter() - started)
        return result

    return observed


# --- task failures ----------------------------------------------------------------------------


def record_task_failure(task_name: str) -> None:
    from keys.lookup_cache import client

    r = client()
    if r is None:
        _LOCAL_TASK_FAILURES.labels(task=task_name).inc()
        return
    try:
        r.hincrby(TASK_FAILURES_KEY, task_name, 1)
    except Exception:
        logger.warning("could not count a failure of task %s: Redis unreachable", task_name)


def _on_task_failure(sender: Any = None, **_: Any) -> None:
    record_task_failure(getattr(sender, "name", None) or "unknown")


def connect_celery_signals() -> None:
    """Count task failures in every process that runs tasks (called by `buddy.celery`)."""
    from celery.signals import task_failure

    task_failure.connect(_on_task_failure, weak=False, dispatch_uid="buddy.metrics.task_failure")


# --- scrape-time collectors -------------------------------------------------------------------


class StateCollector:
    """Counts read from PostgreSQL and Redis when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        yield from self._from_database()
        yield from self._from_redis()

    def _from_database(self) -> Iterable[Metric]:
        from django.db.models import Count

        from deployments.models import Deployment, DeploymentStatus
        from keys.models import ApiKey

        try:
            created = ApiKey.objects.count()
            revoked = dict(
                ApiKey.objects.filter(revoked_at__isnull=False)
                .values_list("revoke_reason")
                .annotate(n=Count("pk"))
                .values_list("revoke_reason", "n")
            )
            by_status = dict(
                Deployment.objects.values_list("status")
                .annotate(n=Count("pk"))
                .values_list("status", "n")
            )
        except Exception:
            logger.warning("metrics: database unreachable, state metrics left out")
            return []
        keys_created = CounterMetricFamily("buddy_keys_created", "API keys ever created.")
        keys_created.add_metric([], created)
        keys_revoked = CounterMetricFamily(
            "buddy_keys_revoked", "API keys revoked, by reason.", labels=["reason"]
        )
        for reason, n in sorted(revoked.items()):
            keys_revoked.add_metric([reason or "unknown"], n)
        deployments = GaugeMetricFamily(
            "buddy_deployments", "Deployments by current status.", labels=["status"]
        )
        for status in DeploymentStatus.values:
            deployments.add_metric([status], by_status.get(status, 0))
        return [keys_created, keys_revoked, deployments]

    def _from_redis(self) -> Iterable[Metric]:
        from keys.lookup_cache import client

        r = client()
        if r is None:
            return _LOCAL_TASK_FAILURES.collect()
        try:
            failures = r.hgetall(TASK_FAILURES_KEY)
        except Exception:
            logger.warning("metrics: Redis unreachable, task failures left out")
            return []
        family = CounterMetricFamily(
            "buddy_task_failures",
            "Celery tasks that failed for good (after their retries), by task name.",
            labels=["task"],
        )
        for task, n in sorted(failures.items()):
            family.add_metric([task.decode()], int(n))
        return [family]


class _ProcessCollector:
    """This process's own metrics, or every web process's in multiprocess mode."""

    def collect(self) -> Iterator[Metric]:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)
            yield from registry.collect()
        else:
            yield from PROCESS_REGISTRY.collect()


def exposition() -> bytes:
    """The text exposition format of every buddy metric, as `/metrics` serves it."""
    registry = CollectorRegistry()
    registry.register(_ProcessCollector())  # type: ignore[arg-type]
    registry.register(StateCollector())  # type: ignore[arg-type]
    return generate_latest(registry)
