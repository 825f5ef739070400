"""Deployments by status, read from PostgreSQL when Prometheus scrapes `/metrics`."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from deployments.models import Deployment, DeploymentStatus

logger = logging.getLogger(__name__)


class DeploymentsCollector:
    def collect(self) -> Iterable[Metric]:
        try:
            by_status = dict(
                Deployment.objects.values_list("status")
                .annotate(n=Count("pk"))
                .values_list("status", "n")
            )
        except Exception:
            logger.warning("metrics: database unreachable, deployment metrics left out")
            return []
        deployments = GaugeMetricFamily(
            "buddy_deployments", "Deployments by current status.", labels=["status"]
        )
        for status in DeploymentStatus.values:
            deployments.add_metric([status], by_status.get(status, 0))
        return [deployments]
