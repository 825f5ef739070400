"""The error catalogue (`buddy.core.errors`) against the contract: every code the contract's tables
name is there with the contract's status, and every producer of an error takes its entry from it."""

from __future__ import annotations

import pytest

from buddy.core import errors
from buddy.core.errors import CATALOGUE, DomainError, ErrorEntry
from buddy.http.errors import error_body
from gateway import upstream, validation  # noqa: F401  (their DomainErrors)
from keys.lookup.outcomes import LookupOutcome, LookupResult

# The contract's error codes and statuses (`../shared/API.md`, v1 and v2), transcribed so that the
# check runs on a fresh clone (checked against the contract's tables when it was written; a
# conditional test that skipped where the contract is not checked out would prove nothing in CI).
CONTRACT_ERRORS = {
    "invalid_json": 400,
    "validation_error": 400,
    "missing_api_key": 400,
    "model_mismatch": 400,
    "invalid_credentials": 401,
    "invalid_api_key": 401,
    "revoked_api_key": 401,
    "expired_api_key": 401,
    "invalid_signature": 401,
    "service_auth_failed": 403,
    "not_found": 404,
    "deployment_not_found": 404,
    "invalid_transition": 409,
    "deployment_not_ready": 409,
    "deployment_stopped": 409,
    "deployment_failed": 409,
    "deployment_terminated": 409,
    "key_limit_reached": 409,
    "key_revoked": 409,
    "key_expired": 409,
    "webhook_limit_reached": 409,
    "secret_already_shown": 410,
    "secret_expired": 410,
    "request_too_large": 413,
    "rate_limited": 429,
    "rate_limit_exceeded": 429,
}
OPENAI_TYPES = {"invalid_request_error", "authentication_error", "rate_limit_error", "server_error"}


@pytest.mark.parametrize("code", sorted(CONTRACT_ERRORS))
def test_every_code_of_the_contract_is_in_the_catalogue_with_its_status(code):
    entry = CATALOGUE[code]
    assert (entry.code, entry.status) == (code, CONTRACT_ERRORS[code])


def test_every_entry_has_an_openai_type_that_fits_its_status():
    for code, entry in CATALOGUE.items():
        assert entry.code == code
        assert entry.type in OPENAI_TYPES
        assert entry.type == errors.type_of_status(entry.status), entry
        assert 400 <= entry.status < 600 and entry.message


def test_every_lookup_outcome_answers_with_its_catalogue_entry():
    for outcome in LookupOutcome:
        if outcome is LookupOutcome.OK:
            assert (outcome.error, outcome.status, outcome.code) == (None, 200, "")
            continue
        assert outcome.error is not None
        entry = CATALOGUE[outcome.code]
        assert (outcome.status, outcome.error_type) == (entry.status, entry.type)
        assert outcome.error == entry.saying(outcome.error.message)
        body = LookupResult(outcome).body()["error"]
        assert (body["code"], body["type"], body["param"]) == (entry.code, entry.type, None)


def _subclasses(cls: type[DomainError]) -> list[type[DomainError]]:
    direct = cls.__subclasses__()
    return direct + [sub for child in direct for sub in _subclasses(child)]


@pytest.mark.parametrize("cls", _subclasses(DomainError), ids=lambda cls: cls.__name__)
def test_every_domain_error_takes_its_entry_from_the_catalogue(cls):
    entry = CATALOGUE[cls.entry.code]
    assert (cls.entry.status, cls.entry.type) == (entry.status, entry.type)


def test_an_instance_may_answer_with_another_entry_of_the_catalogue():
    failure = upstream.UpstreamFailure(
        "slow down", entry=errors.UPSTREAM_RATE_LIMITED, retry_after="3"
    )
    assert failure.entry is errors.UPSTREAM_RATE_LIMITED
    assert dict(failure.headers) == {"Retry-After": "3"}
    assert upstream.UpstreamFailure("down").entry is errors.UPSTREAM_ERROR


def test_the_renderer_shapes_the_contract_body():
    entry = ErrorEntry("x_code", 409, "invalid_request_error", "Default.")
    assert error_body(entry) == {
        "error": {
            "message": "Default.",
            "type": "invalid_request_error",
            "code": "x_code",
            "param": None,
        }
    }
    fields = {"name": ["Required."], "pack_hours": ["Bad."]}
    assert error_body(entry, message="Own.", fields=fields) == {
        "error": {
            "message": "Own.",
            "type": "invalid_request_error",
            "code": "x_code",
            "param": "name",
            "fields": fields,
        }
    }
    assert error_body(entry, param="model")["error"]["param"] == "model"


def test_a_bare_status_gets_its_generic_entry():
    assert errors.entry_of_status(404, "Not Found") is errors.NOT_FOUND
    assert errors.entry_of_status(500, "Internal Server Error") is errors.SERVER_ERROR
    gone = errors.entry_of_status(410, "Gone")
    assert (gone.code, gone.status, gone.type, gone.message) == (
        "bad_request",
        410,
        "invalid_request_error",
        "Gone",
    )
    unavailable = errors.entry_of_status(503, "Service Unavailable")
    assert (unavailable.code, unavailable.status, unavailable.type) == (
        "server_error",
        503,
        "server_error",
    )
