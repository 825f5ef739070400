"""Usage of keys as the production proxy reports it (`POST /internal/v1/usage`): its records
resolved to keys and deployments, then added to the rollup once per batch id
(`buddy.usage.services`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from buddy.core.ids import as_uuid
from buddy.usage.buffer import Count, hour_of
from buddy.usage.services import usage_apply
from keys.lookup import ratelimit
from keys.models import ApiKey


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
    without Redis. The tokens of a key with a TPM limit are counted in its window too, the first
    time the batch is applied (`keys.lookup.ratelimit.tokens_spent`)."""
    wanted = {pk for pk in (as_uuid(r.key_id) for r in records) if pk is not None}
    rows = list(
        ApiKey.objects.filter(pk__in=wanted, deployment_id__isnull=False).values_list(
            "pk", "deployment_id", "public_id", "rate_limit_tpm"
        )
    )
    deployments = {pk: deployment_id for pk, deployment_id, _, _ in rows}
    # By the key id as a count names it (`str(pk)`).
    tpm_limited = {str(pk): public_id for pk, _, public_id, tpm in rows if tpm is not None}
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
    applied, accepted = usage_apply(name=f"proxy:{batch_id}", counts=counts, accepted=len(counts))
    if applied:
        for count in counts:
            public_id = tpm_limited.get(count.key_id)
            if public_id is not None:
                ratelimit.tokens_spent(
                    public_id=public_id, tokens=count.prompt_tokens + count.completion_tokens
                )
    return accepted
