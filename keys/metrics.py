"""Keys created and revoked, read from PostgreSQL when Prometheus scrapes `/metrics` (key rows are
never deleted, so these counts only grow: true counters that no restart can make drift)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, Metric

from keys.models import ApiKey

logger = logging.getLogger(__name__)


class KeysCollector:
    def collect(self) -> Iterable[Metric]:
        try:
            created = ApiKey.objects.count()
            revoked = dict(
                ApiKey.objects.filter(revoked_at__isnull=False)
                .values_list("revoke_reason")
                .annotate(n=Count("pk"))
                .values_list("revoke_reason", "n")
            )
        except Exception:
            logger.warning("metrics: database unreachable, key metrics left out")
            return []
        keys_created = CounterMetricFamily("buddy_keys_created", "API keys ever created.")
        keys_created.add_metric([], created)
        keys_revoked = CounterMetricFamily(
            "buddy_keys_revoked", "API keys revoked, by reason.", labels=["reason"]
        )
        for reason, n in sorted(revoked.items()):
            keys_revoked.add_metric([reason or "unknown"], n)
        return [keys_created, keys_revoked]
