"""The contract's table of lookup answers, and how a verified key and its deployment are judged."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from buddy.core import errors
from buddy.core.errors import ErrorEntry
from buddy.http.errors import error_body
from deployments.models import PACK_EXPIRED_STATUS, STATUS_SPEC, TERMINAL_STATUSES
from keys.lookup.cache import RateState


class LookupOutcome(enum.Enum):
    """Each row of the lookup table, as its catalogue entry (`None`: the 200)."""

    # Declared, not members: set on each member from its entry.
    error: ErrorEntry | None
    status: int
    code: str
    error_type: str

    OK = None
    INVALID_JSON = errors.INVALID_JSON.saying("The request body is not a JSON object.")
    MISSING_API_KEY = errors.MISSING_API_KEY
    MODEL_MISMATCH = errors.MODEL_MISMATCH
    INVALID_API_KEY = errors.INVALID_API_KEY
    REVOKED_API_KEY = errors.REVOKED_API_KEY
    EXPIRED_API_KEY = errors.EXPIRED_API_KEY
    DEPLOYMENT_NOT_FOUND = errors.DEPLOYMENT_NOT_FOUND
    DEPLOYMENT_NOT_READY = errors.DEPLOYMENT_NOT_READY.saying("The deployment is not ready yet.")
    DEPLOYMENT_STOPPED = errors.DEPLOYMENT_STOPPED
    DEPLOYMENT_FAILED = errors.DEPLOYMENT_FAILED
    DEPLOYMENT_TERMINATED = errors.DEPLOYMENT_TERMINATED
    RATE_LIMITED = errors.RATE_LIMITED.saying("Too many failed attempts for this key; retry later.")
    RATE_LIMIT_EXCEEDED = errors.RATE_LIMIT_EXCEEDED

    def __init__(self, error: ErrorEntry | None) -> None:
        # Plain attributes, not properties: the hot path reads them on every lookup.
        self.error = error
        self.status = 200 if error is None else error.status
        self.code = "" if error is None else error.code
        self.error_type = "" if error is None else error.type


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """What a lookup needs to know of a verified key and its deployment (cacheable)."""

    key_id: str
    public_id: str
    revoked: bool
    deployment_id: str | None
    deployment_status: str
    model: str
    endpoint_url: str
    pack_ends_at: datetime | None
    expires_at: datetime | None = None
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None

    @property
    def has_limits(self) -> bool:
        return self.rate_limit_rpm is not None or self.rate_limit_tpm is not None


@dataclass(frozen=True, slots=True)
class LookupResult:
    outcome: LookupOutcome
    snapshot: KeySnapshot | None = None
    retry_after: int | None = None
    rate: RateState | None = None  # the request's count, for a key with limits

    @property
    def ok(self) -> bool:
        return self.outcome is LookupOutcome.OK

    def body(self) -> dict[str, Any]:
        """The response body of the contract for this outcome."""
        if self.ok and self.snapshot is not None:
            return {
                "deployment_id": self.snapshot.deployment_id,
                "model": self.snapshot.model,
                "endpoint_url": self.snapshot.endpoint_url,
                "key_id": self.snapshot.key_id,
            }
        assert self.outcome.error is not None, "an OK outcome without its snapshot"
        return error_body(self.outcome.error)


# An ended deployment's answer, by the code of its end (for `judge`).
_OUTCOME_OF_END_CODE = {
    outcome.code: outcome
    for outcome in LookupOutcome
    if outcome.code in {spec.end_code for spec in STATUS_SPEC.values() if spec.ended}
}


def judge(snapshot: KeySnapshot, *, model: object, now: datetime) -> LookupOutcome:
    """The answer for a verified key, from the contract's order of rows (the last,
    `rate_limit_exceeded`, is `ratelimit.apply`'s, on the count); what a deployment's
    status answers is the status spec's: an ended one, the code of its end; a live one whose pack
    has run out, the code of the end the sweep gives it; one that serves, its endpoint."""
    if snapshot.revoked:
        return LookupOutcome.REVOKED_API_KEY
    if snapshot.expires_at is not None and snapshot.expires_at <= now:
        return LookupOutcome.EXPIRED_API_KEY
    if snapshot.deployment_id is None:
        return LookupOutcome.DEPLOYMENT_NOT_FOUND
    status = snapshot.deployment_status
    if (
        status not in TERMINAL_STATUSES
        and snapshot.pack_ends_at is not None
        and snapshot.pack_ends_at <= now
    ):
        status = PACK_EXPIRED_STATUS
    spec = STATUS_SPEC.get(status)
    if spec is not None and spec.ended:
        return _OUTCOME_OF_END_CODE[spec.end_code]
    if spec is None or not spec.serves or not snapshot.endpoint_url:
        return LookupOutcome.DEPLOYMENT_NOT_READY
    if model is not None and model != snapshot.model:
        return LookupOutcome.MODEL_MISMATCH
    return LookupOutcome.OK


def is_permanent_refusal(snapshot: KeySnapshot) -> bool:
    """Answers no later change can turn into a 200 (safe to serve whatever the guards say)."""
    return (
        snapshot.revoked
        or snapshot.deployment_id is None
        or snapshot.deployment_status in TERMINAL_STATUSES
    )
