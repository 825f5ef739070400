"""The contract's table of lookup answers, and how a verified key and its deployment are judged."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deployments.models import PACK_EXPIRED_STATUS, STATUS_SPEC, TERMINAL_STATUSES


class LookupOutcome(enum.Enum):
    """(HTTP status, error code, OpenAI error type) of each row of the lookup table."""

    OK = (200, "", "")
    INVALID_JSON = (400, "invalid_json", "invalid_request_error")
    MISSING_API_KEY = (400, "missing_api_key", "invalid_request_error")
    MODEL_MISMATCH = (400, "model_mismatch", "invalid_request_error")
    INVALID_API_KEY = (401, "invalid_api_key", "authentication_error")
    REVOKED_API_KEY = (401, "revoked_api_key", "authentication_error")
    DEPLOYMENT_NOT_FOUND = (404, "deployment_not_found", "invalid_request_error")
    DEPLOYMENT_NOT_READY = (409, "deployment_not_ready", "invalid_request_error")
    DEPLOYMENT_STOPPED = (409, "deployment_stopped", "invalid_request_error")
    DEPLOYMENT_FAILED = (409, "deployment_failed", "invalid_request_error")
    DEPLOYMENT_TERMINATED = (409, "deployment_terminated", "invalid_request_error")
    RATE_LIMITED = (429, "rate_limited", "rate_limit_error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]

    @property
    def error_type(self) -> str:
        return self.value[2]


MESSAGES = {
    LookupOutcome.INVALID_JSON: "The request body is not a JSON object.",
    LookupOutcome.MISSING_API_KEY: "No API key: send 'Authorization: Bearer ob_sk_...'.",
    LookupOutcome.MODEL_MISMATCH: "This key's deployment does not serve the requested model.",
    LookupOutcome.INVALID_API_KEY: "Invalid API key.",
    LookupOutcome.REVOKED_API_KEY: "This API key has been revoked.",
    LookupOutcome.DEPLOYMENT_NOT_FOUND: "The deployment of this key no longer exists.",
    LookupOutcome.DEPLOYMENT_NOT_READY: "The deployment is not ready yet.",
    LookupOutcome.DEPLOYMENT_STOPPED: "The deployment has been stopped.",
    LookupOutcome.DEPLOYMENT_FAILED: "The deployment has failed.",
    LookupOutcome.DEPLOYMENT_TERMINATED: "The deployment has been terminated.",
    LookupOutcome.RATE_LIMITED: "Too many failed attempts for this key; retry later.",
}


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


@dataclass(frozen=True, slots=True)
class LookupResult:
    outcome: LookupOutcome
    snapshot: KeySnapshot | None = None
    retry_after: int | None = None

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
        return {
            "error": {
                "message": MESSAGES[self.outcome],
                "type": self.outcome.error_type,
                "code": self.outcome.code,
                "param": None,
            }
        }


# An ended deployment's answer, by the code of its end (for `judge`).
_OUTCOME_OF_END_CODE = {
    outcome.code: outcome
    for outcome in LookupOutcome
    if outcome.code in {spec.end_code for spec in STATUS_SPEC.values() if spec.ended}
}


def judge(snapshot: KeySnapshot, *, model: object, now: datetime) -> LookupOutcome:
    """The answer for a verified key, from the contract's order of rows; what a deployment's
    status answers is the status spec's: an ended one, the code of its end; a live one whose pack
    has run out, the code of the end the sweep gives it; one that serves, its endpoint."""
    if snapshot.revoked:
        return LookupOutcome.REVOKED_API_KEY
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
