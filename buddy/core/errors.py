"""Domain errors: what a service refuses, with the contract's status and error code.

Services raise these; the interfaces (API exception handler, admin, tasks) decide how to show them.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code: int = 400
    code: str = "invalid_request"
    error_type: str = "invalid_request_error"
    default_message: str = "The request cannot be completed."

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class ValidationFailed(DomainError):
    status_code = 400
    code = "validation_error"
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, fields: dict[str, list[str]]) -> None:
        super().__init__(message, fields=fields)
        self.fields = fields


class InvalidTransition(DomainError):
    status_code = 409
    code = "invalid_transition"
    default_message = "The deployment cannot make that status change."


class DeploymentNotReady(DomainError):
    status_code = 409
    code = "deployment_not_ready"
    default_message = "The deployment is not ready."


class KeyLimitReached(DomainError):
    status_code = 409
    code = "key_limit_reached"
    default_message = "The deployment holds the maximum number of active keys."


class KeyRevoked(DomainError):
    status_code = 409
    code = "key_revoked"
    default_message = "The key is revoked."


class SecretAlreadyShown(DomainError):
    status_code = 410
    code = "secret_already_shown"
    default_message = "The secret of this key has already been shown."


class SecretExpired(DomainError):
    status_code = 410
    code = "secret_expired"
    default_message = "The secret of this key can no longer be revealed."


class InvalidCredentials(DomainError):
    status_code = 401
    code = "invalid_credentials"
    error_type = "authentication_error"
    default_message = "Invalid username or password."
