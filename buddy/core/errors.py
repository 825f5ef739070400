"""Every error buddy answers, in one catalogue, and the domain errors services raise.

Each entry holds what the contract fixes for an error code: its HTTP status, its OpenAI error type
and a default message. Everything that refuses a request (services, the DRF exception handler, the
JSON-errors middleware, the proxy lookup, the gateway, readyz) takes its entry from here by code;
`buddy.http.errors` is the one renderer that turns an entry into the contract's body. Pure Python,
so the kernel's lowest layer stays light: no Django, no DRF.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# OpenAI's error types, the only four the contract uses.
TYPE_INVALID_REQUEST = "invalid_request_error"
TYPE_AUTHENTICATION = "authentication_error"
TYPE_RATE_LIMIT = "rate_limit_error"
TYPE_SERVER = "server_error"


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One error code of the contract: its status, OpenAI type and default message."""

    code: str
    status: int
    type: str
    message: str

    def saying(self, message: str) -> ErrorEntry:
        """The same error (code, status, type) with another default message, for a producer
        whose wording is its own (the proxy lookup says "Invalid API key.", the local model server
        "Invalid upstream credential.")."""
        return dataclasses.replace(self, message=message)


def type_of_status(status: int) -> str:
    """OpenAI's type for a status that has no entry: 401 and 403 are authentication errors, 429 a
    rate limit, 5xx a server error, every other 4xx an invalid request."""
    if status in (401, 403):
        return TYPE_AUTHENTICATION
    if status == 429:
        return TYPE_RATE_LIMIT
    return TYPE_SERVER if status >= 500 else TYPE_INVALID_REQUEST


def _e(code: str, status: int, message: str, error_type: str | None = None) -> ErrorEntry:
    return ErrorEntry(code, status, error_type or type_of_status(status), message)


# --- 400 -------------------------------------------------------------------------------------
BAD_REQUEST = _e("bad_request", 400, "Bad request.")
INVALID_JSON = _e("invalid_json", 400, "The body is not valid JSON.")
VALIDATION_ERROR = _e("validation_error", 400, "The request is not valid.")
MISSING_API_KEY = _e("missing_api_key", 400, "No API key: send 'Authorization: Bearer ob_sk_...'.")
MODEL_MISMATCH = _e(
    "model_mismatch", 400, "This key's deployment does not serve the requested model."
)
UPSTREAM_REJECTED = _e("upstream_rejected", 400, "The model server refused the request.")
# --- 401 -------------------------------------------------------------------------------------
NOT_AUTHENTICATED = _e("not_authenticated", 401, "Authentication required.")
AUTHENTICATION_FAILED = _e("authentication_failed", 401, "Incorrect authentication credentials.")
INVALID_CREDENTIALS = _e("invalid_credentials", 401, "Invalid username or password.")
INVALID_API_KEY = _e("invalid_api_key", 401, "Invalid API key.")
REVOKED_API_KEY = _e("revoked_api_key", 401, "This API key has been revoked.")
EXPIRED_API_KEY = _e("expired_api_key", 401, "This API key has expired.")
INVALID_SIGNATURE = _e("invalid_signature", 401, "The signature is missing or not valid.")
# --- 403 -------------------------------------------------------------------------------------
PERMISSION_DENIED = _e("permission_denied", 403, "Permission denied.")
CSRF_FAILED = _e("csrf_failed", 403, "CSRF verification failed.")
SERVICE_AUTH_FAILED = _e(
    "service_auth_failed", 403, "A valid service token of the right role is required."
)
# --- 404 -------------------------------------------------------------------------------------
NOT_FOUND = _e("not_found", 404, "Not found.")
DEPLOYMENT_NOT_FOUND = _e(
    "deployment_not_found", 404, "The deployment of this key no longer exists."
)
# --- 405, 406 --------------------------------------------------------------------------------
METHOD_NOT_ALLOWED = _e("method_not_allowed", 405, "Method not allowed.")
NOT_ACCEPTABLE = _e("not_acceptable", 406, "Could not satisfy the request Accept header.")
# --- 409 -------------------------------------------------------------------------------------
INVALID_TRANSITION = _e("invalid_transition", 409, "The deployment cannot make that status change.")
DEPLOYMENT_NOT_READY = _e("deployment_not_ready", 409, "The deployment is not ready.")
DEPLOYMENT_STOPPED = _e("deployment_stopped", 409, "The deployment has been stopped.")
DEPLOYMENT_FAILED = _e("deployment_failed", 409, "The deployment has failed.")
DEPLOYMENT_TERMINATED = _e("deployment_terminated", 409, "The deployment has been terminated.")
KEY_LIMIT_REACHED = _e(
    "key_limit_reached", 409, "The deployment holds the maximum number of active keys."
)
KEY_REVOKED = _e("key_revoked", 409, "The key is revoked.")
KEY_EXPIRED = _e("key_expired", 409, "The key has expired.")
WEBHOOK_LIMIT_REACHED = _e(
    "webhook_limit_reached", 409, "The maximum number of webhook endpoints is reached."
)
# --- 410 -------------------------------------------------------------------------------------
SECRET_ALREADY_SHOWN = _e(
    "secret_already_shown", 410, "The secret of this key has already been shown."
)
SECRET_EXPIRED = _e("secret_expired", 410, "The secret of this key can no longer be revealed.")
# --- 413, 415 --------------------------------------------------------------------------------
REQUEST_TOO_LARGE = _e("request_too_large", 413, "Request too large.")
UNSUPPORTED_MEDIA_TYPE = _e("unsupported_media_type", 415, "Unsupported media type.")
# --- 429 -------------------------------------------------------------------------------------
RATE_LIMITED = _e("rate_limited", 429, "Too many requests; retry later.")
RATE_LIMIT_EXCEEDED = _e("rate_limit_exceeded", 429, "This key is over its rate limit.")
UPSTREAM_RATE_LIMITED = _e("upstream_rate_limited", 429, "The model server is rate limiting.")
# --- 5xx -------------------------------------------------------------------------------------
SERVER_ERROR = _e("server_error", 500, "Internal server error.")
UPSTREAM_ERROR = _e("upstream_error", 502, "The model server failed.")
NOT_READY = _e("not_ready", 503, "Not ready.")
UPSTREAM_TIMEOUT = _e("upstream_timeout", 504, "The model server did not answer in time.")

# Every entry above, by code (derived, so an entry cannot be declared and left out).
CATALOGUE: Mapping[str, ErrorEntry] = MappingProxyType(
    {entry.code: entry for entry in list(globals().values()) if isinstance(entry, ErrorEntry)}
)

# The generic answer for a bare status (an error Django or a server answered without a code).
_OF_STATUS: Mapping[int, ErrorEntry] = MappingProxyType(
    {
        400: BAD_REQUEST,
        401: NOT_AUTHENTICATED,
        403: PERMISSION_DENIED,
        404: NOT_FOUND,
        405: METHOD_NOT_ALLOWED,
        413: REQUEST_TOO_LARGE,
        429: RATE_LIMITED,
        500: SERVER_ERROR,
    }
)


def entry_of_status(status: int, reason: str) -> ErrorEntry:
    """The entry for an error answered with a status alone: the status's generic entry, or, for a
    status without one, `bad_request` / `server_error` at that status with `reason` as message."""
    entry = _OF_STATUS.get(status)
    if entry is not None:
        return entry
    base = SERVER_ERROR if status >= 500 else BAD_REQUEST
    return ErrorEntry(base.code, status, base.type, reason)


def entry_of_code(code: str, status: int, message: str) -> ErrorEntry:
    """The catalogue's entry of `code`, or (a code some library made up) one at `status` with the
    type its status implies."""
    entry = CATALOGUE.get(code)
    if entry is not None and entry.status == status:
        return entry
    return ErrorEntry(code, status, type_of_status(status), message)


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class DomainError(Exception):
    """A refusal: its catalogue entry (the class's, or one an instance is given), a message (the
    entry's unless given) and, for validation errors, the messages of each field."""

    entry: ErrorEntry = BAD_REQUEST

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: dict[str, list[str]] | None = None,
        entry: ErrorEntry | None = None,
        **extra: Any,
    ) -> None:
        if entry is not None:
            self.entry = entry
        self.message = message or self.entry.message
        self.fields = fields
        self.extra = extra  # context for logs and operators (e.g. `current=`), never rendered
        super().__init__(self.message)

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers that tell the client how to proceed (e.g. `Retry-After`)."""
        return _NO_HEADERS


class NotFound(DomainError):
    entry = NOT_FOUND


class ValidationFailed(DomainError):
    entry = VALIDATION_ERROR

    def __init__(self, message: str | None = None, *, fields: dict[str, list[str]]) -> None:
        super().__init__(message, fields=fields)


class InvalidTransition(DomainError):
    entry = INVALID_TRANSITION


class DeploymentNotReady(DomainError):
    entry = DEPLOYMENT_NOT_READY


class KeyLimitReached(DomainError):
    entry = KEY_LIMIT_REACHED


class KeyRevoked(DomainError):
    entry = KEY_REVOKED


class KeyExpired(DomainError):
    entry = KEY_EXPIRED


class SecretAlreadyShown(DomainError):
    entry = SECRET_ALREADY_SHOWN


class SecretExpired(DomainError):
    entry = SECRET_EXPIRED


class InvalidCredentials(DomainError):
    entry = INVALID_CREDENTIALS


class WebhookLimitReached(DomainError):
    entry = WEBHOOK_LIMIT_REACHED


class InvalidSignature(DomainError):
    entry = INVALID_SIGNATURE
