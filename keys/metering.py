"""Usage of keys as the production proxy reports it (`POST /internal/v1/usage`): its records
resolved to keys and deployments, then added to the rollup once per batch id (`usage.services`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from buddy.core.ids import as_uuid
from keys.models import ApiKey
from usage.buffer import Count, hour_of
from usage.services import usage_apply


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    key_id: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


def usage_report(*, batch_id: str, records: list[ReportedUsage]) -> int:
    """Count a proxy's batch in the current UTC hour, once per `batch_id` (a batch seen in the
    last 24 h answers the count of its first time and adds nothing); records of unknown keys (or
    of keys whose deployment was deleted) are skipped. Returns how many records were accepted.

    One transaction, straight to the rollup: the proxy already batches (never a write per
    request), and the batch row that makes it idempotent commits with its counts, with or
    without Redis."""
    wanted = {pk for pk in (as_uuid(r.key_id) for r in records) if pk is not None}
    deployments = dict(
        ApiKey.objects.filter(pk__in=wanted, deployment_id__isnull=False).values_list(
            "pk", "deployment_id"
        )
    )
    hour = hour_of(time.time())
    counts: list[Count] = []
    for record in records:
        pk = as_uuid(record.key_id)
        deployment_id = deployments.get(pk) if pk is not None else None
        if deployment_id is None:
            continue
        counts.append(
            Count(
                str(pk),
                str(deployment_id),
                hour,
                record.requests,
                record.prompt_tokens,
                record.completion_tokens,
            )
        )
    _applied, accepted = usage_apply(name=f"proxy:{batch_id}", counts=counts, accepted=len(counts))
    return accepted
