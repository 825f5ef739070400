"""The proxy's lookup (`key_lookup`, the production entry point): one test per row of the
contract's table, each run cold (answered from PostgreSQL) and warm (the same lookup answered
again from the Redis entry the first one filled)."""

from datetime import timedelta

import pytest
import time_machine

from buddy.core.redis import client
from deployments.models import Deployment
from keys import services, tokens
from keys.lookup.cache import PREFIX
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db
O = LookupOutcome


_mode = {"warm": False}


@pytest.fixture(autouse=True, params=["cold", "warm"])
def cache_mode(request):
    _mode["warm"] = request.param == "warm"
    yield request.param


def _forget_entries():
    r = client()
    assert r is not None
    for name in r.scan_iter(match=f"{PREFIX}e:*"):
        r.delete(name)


def lookup(authorization, model=None):
    """Cold: no entry, so PostgreSQL answers (and fills one). Warm: a first lookup fills the
    entry, and the answer checked is the second one, read from it."""
    _forget_entries()
    if _mode["warm"]:
        key_lookup(authorization=authorization, model=model)
    return key_lookup(authorization=authorization, model=model)


def test_valid_key_of_a_ready_deployment_answers_its_route(live_key, ready_deployment):
    key, plaintext = live_key
    result = lookup(f"Bearer {plaintext}", "gemma4:26b")
    assert result.outcome is O.OK
    assert result.body() == {
        "deployment_id": str(ready_deployment.pk),
        "model": "gemma4:26b",
        "endpoint_url": ready_deployment.endpoint_url,
        "key_id": str(key.pk),
    }
    assert lookup(f"bearer   {plaintext}  ").outcome is O.OK  # scheme is case-insensitive


@pytest.mark.parametrize(
    "header", [None, "", "   ", "Bearer", "Bearer   ", "Basic abc", "Token x", 5]
)
def test_missing_or_non_bearer_authorization(header):
    assert lookup(header).outcome is O.MISSING_API_KEY


def test_malformed_and_unknown_keys_are_invalid(live_key):
    _, plaintext = live_key
    flipped = plaintext[:-7] + ("A" if plaintext[-7] != "A" else "B") + plaintext[-6:]
    for candidate in ["sk-abc", plaintext + "x", flipped, tokens.generate().plaintext]:
        result = lookup(f"Bearer {candidate}")
        assert (result.outcome.status, result.outcome.code) == (401, "invalid_api_key")


def test_wrong_secret_with_a_real_public_id_is_invalid(live_key):
    key, _ = live_key
    head = "ob_sk_" + key.public_id + "x" * 30
    forged = head + tokens.checksum(head)
    assert lookup(f"Bearer {forged}").outcome is O.INVALID_API_KEY


def test_revoked_key_is_revoked_even_with_a_wrong_model(live_key):
    key, plaintext = live_key
    services.key_revoke(key_id=key.pk, actor="t")
    result = lookup(f"Bearer {plaintext}", "other-model")
    assert (result.outcome.status, result.outcome.code) == (401, "revoked_api_key")


def test_deleted_deployment_is_not_found(live_key, ready_deployment):
    _, plaintext = live_key
    Deployment.objects.filter(pk=ready_deployment.pk).delete()
    result = lookup(f"Bearer {plaintext}")
    assert (result.outcome.status, result.outcome.code) == (404, "deployment_not_found")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("pending", "deployment_not_ready"),
        ("provisioning", "deployment_not_ready"),
        ("stopped", "deployment_stopped"),
        ("failed", "deployment_failed"),
        ("terminated", "deployment_terminated"),
    ],
)
def test_deployment_status_answers_409(live_key, ready_deployment, status, code):
    _, plaintext = live_key
    Deployment.objects.filter(pk=ready_deployment.pk).update(status=status)
    result = lookup(f"Bearer {plaintext}", "wrong-model")  # 409 comes before model_mismatch
    assert (result.outcome.status, result.outcome.code) == (409, code)


def test_ended_pack_answers_409_before_the_sweep(live_key, ready_deployment):
    _, plaintext = live_key
    with time_machine.travel(ready_deployment.pack_ends_at + timedelta(seconds=1)):
        result = lookup(f"Bearer {plaintext}")
    assert (result.outcome.status, result.outcome.code) == (409, "deployment_terminated")


def test_model_mismatch(live_key):
    _, plaintext = live_key
    result = lookup(f"Bearer {plaintext}", "qwen3.6:27b")
    assert (result.outcome.status, result.outcome.code) == (400, "model_mismatch")


def test_error_body_has_the_contract_shape(live_key):
    body = lookup("Bearer nope").body()
    assert body == {
        "error": {
            "message": "Invalid API key.",
            "type": "authentication_error",
            "code": "invalid_api_key",
            "param": None,
        }
    }


def test_other_deployments_keys_route_to_their_own_deployment(live_key):
    other = DeploymentFactory(ready=True, endpoint_url="http://other:1")
    _, plaintext = services.key_create(deployment_id=other.pk, name="b", actor="t")
    assert lookup(f"Bearer {plaintext}").body()["endpoint_url"] == "http://other:1"


def test_a_warm_lookup_is_answered_from_the_cache(live_key, cache_mode, django_assert_num_queries):
    _, plaintext = live_key
    _forget_entries()
    key_lookup(authorization=f"Bearer {plaintext}")
    with django_assert_num_queries(0):
        assert key_lookup(authorization=f"Bearer {plaintext}").outcome is O.OK
