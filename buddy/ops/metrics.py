"""Prometheus metrics of buddy, served at `/metrics`.

Three sources, chosen so that every web worker answers a scrape with the same, whole numbers:

- **Lookups** (count by outcome, latency histogram) happen in the web processes. gunicorn runs
  several of them, so with `PROMETHEUS_MULTIPROC_DIR` set (the container image sets it) the
  counters live in prometheus-client's multiprocess files and any worker's scrape sums them all.
  Without it (the embedded default, tests) they live in this process.
- **Keys created and revoked, deployments by status** are read from PostgreSQL at scrape time,
  by collectors the apps register (`register_collector`, in their `AppConfig.ready`), at most
  once every `BUDDY_METRICS_GAUGE_SECONDS` per process (scrapes in between get the last answer:
  a scraper, or several, cannot make buddy count whole tables more often than that). Key rows
  are never deleted, so their counts only grow and are true counters; the database is the record
  of truth, so no process restart or lost increment can make them drift.
- **Task failures** happen in the Celery worker, another process (often another container): the
  `task_failure` signal increments a hash in Redis, read at scrape time. A Redis restart resets it,
  which Prometheus' `rate()` treats as a counter reset. (The embedded default counts them the same
  way, in its in-process Redis.)
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import wraps
from typing import Any, ParamSpec, Protocol, TypeVar

# In multiprocess mode every metric writes to a file there from its creation on: make sure the
# directory exists in whatever process imports this (web worker, Celery worker, a shell).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from buddy.core import errors
from buddy.core.credentials import bearer_token
from buddy.core.redis import client
from buddy.core.tasks import TASK_FAILURES_KEY

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
OTHER_OUTCOME = "other"


# The lookup's outcome codes (registered by the app that answers lookups): labels are bounded.
_known_outcomes: set[str] = {"ok"}


def register_lookup_outcomes(codes: Iterable[str]) -> None:
    _known_outcomes.update(code or "ok" for code in codes)


def outcome_label(outcome_code: str) -> str:
    """The label of an outcome: `ok`, a contract error code, or `other` (bounded cardinality)."""
    label = outcome_code or "ok"
    return label if label in _known_outcomes else OTHER_OUTCOME


def record_lookup(outcome_code: str, seconds: float) -> None:
    """Count one answered lookup (`""` or `"ok"` for a 200, else its error code) and its time."""
    counter = _lookup_counters.get(outcome_code)
    if counter is None:  # the labelled child, found once per outcome (it never changes)
        counter = _lookup_counters[outcome_code] = LOOKUPS.labels(
            outcome=outcome_label(outcome_code)
        )
    counter.inc()
    LOOKUP_SECONDS.observe(max(seconds, 0.0))


_lookup_counters: dict[str, Any] = {}


class _HasOutcome(Protocol):
    @property
    def outcome(self) -> Any: ...


R = TypeVar("R", bound=_HasOutcome)


def observe_lookup(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a lookup (e.g. `keys.lookup.selectors.key_lookup`) so each call is counted and timed.

    The view then calls `observe_lookup(key_lookup)(authorization=..., model=...)`, or binds the
    wrapped function once at import.
    """

    @wraps(fn)
    def observed(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        record_lookup(result.outcome.code, time.perf_counter() - started)
        return result

    return observed


# --- scrape-time collectors -------------------------------------------------------------------


class _AtMostEvery:
    """A scrape-time collector whose answer is kept `BUDDY_METRICS_GAUGE_SECONDS`: its queries run
    at most that often in this process, however often (and by however many) it is scraped. A
    failed collection (an empty answer) is not kept."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector
        self._lock = threading.Lock()
        self._metrics: list[Metric] = []
        self._collected_at = -math.inf

    def collect(self) -> list[Metric]:
        with self._lock:
            now = time.monotonic()
            if now - self._collected_at >= settings.BUDDY_METRICS_GAUGE_SECONDS:
                metrics = list(self.collector.collect())
                if metrics:
                    self._metrics, self._collected_at = metrics, now
                else:
                    self._metrics = []
            return self._metrics

    def forget(self) -> None:
        with self._lock:
            self._metrics, self._collected_at = [], -math.inf


_collectors: list[_AtMostEvery] = []


def register_collector(collector: Any) -> None:
    """Add a scrape-time collector (an object with `collect() -> Iterable[Metric]`), once; it runs
    at most every `BUDDY_METRICS_GAUGE_SECONDS`."""
    if not any(type(c.collector) is type(collector) for c in _collectors):
        _collectors.append(_AtMostEvery(collector))


def forget_collected() -> None:
    """Drop the kept answers of the scrape-time collectors (the next scrape queries again)."""
    for collector in _collectors:
        collector.forget()


def scrape_refusal(authorization: str | None) -> errors.ErrorEntry | None:
    """Why a scrape with this `Authorization` header is refused, or None when it may scrape.

    Only `Bearer $BUDDY_METRICS_TOKEN` may scrape. Without the variable, `/metrics` does not exist
    outside DEBUG (404) and is open in DEBUG (the embedded default, on loopback)."""
    expected: str = settings.BUDDY_METRICS_TOKEN
    if not expected:
        return None if settings.DEBUG else errors.NOT_FOUND
    presented = bearer_token(authorization)
    if presented is None:
        return errors.NOT_AUTHENTICATED
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        return errors.PERMISSION_DENIED
    return None


class TaskFailureCollector:
    """Task failures, counted in Redis by every process that runs tasks (`buddy.core.tasks`)."""

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "buddy_task_failures",
            "Celery tasks that failed for good (after their retries), by task name.",
            labels=["task"],
        )
        try:
            failures: dict[bytes, bytes] = client().hgetall(TASK_FAILURES_KEY)  # type: ignore[assignment]
            counts = {t.decode(): int(n) for t, n in failures.items()}
        except Exception:
            logger.warning("metrics: Redis unreachable, task failures left out")
            return []
        for task, n in sorted(counts.items()):
            family.add_metric([task], n)
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
    registry.register(_ProcessCollector())
    registry.register(TaskFailureCollector())
    for collector in _collectors:
        registry.register(collector)
    return generate_latest(registry)
