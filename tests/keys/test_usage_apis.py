"""The usage endpoints: the proxy's batches (`POST /internal/v1/usage`), the series of a key and
of a deployment, and `usage_24h` on every key representation."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from django.conf import settings
from django.test import Client

from buddy.accounts.selectors import service_token_cache
from buddy.accounts.services import service_token_create
from buddy.usage.models import UsageHourly
from buddy.usage.selectors import floor_hour
from keys import services as key_services
from keys.lookup.cache import tpm_window
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from tests.console import assert_error
from tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db
URL = "/internal/v1/usage"


@pytest.fixture(autouse=True)
def _fresh_service_token_cache():
    service_token_cache.clear()
    yield
    service_token_cache.clear()


@pytest.fixture
def report():
    _token, secret = service_token_create(name="edge", role="proxy")
    client = Client()

    def report(body: object, *, token: str = secret, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(body)
        return client.post(
            URL, data=data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )

    return report


def record(key_id: object, requests: int = 1, prompt: int = 2, completion: int = 3) -> dict:
    return {
        "key_id": str(key_id),
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }


def rows() -> dict[str, tuple[int, int, int]]:
    return {
        str(r.key_id): (r.requests, r.prompt_tokens, r.completion_tokens)
        for r in UsageHourly.objects.all()
    }


# --- the proxy's batches -----------------------------------------------------------------------------


def test_a_batch_is_counted_in_the_current_hour_and_unknown_keys_are_skipped(report, live_key):
    key, _secret = live_key
    response = report(
        {"batch_id": "b-1", "records": [record(key.pk), record(key.pk, 2, 5, 5), record(uuid.uuid4()),
                                         record("not-a-key")]}
    )  # fmt: skip
    assert response.status_code == 202
    assert response.json() == {"accepted": 2}
    assert rows() == {str(key.pk): (3, 7, 8)}
    assert UsageHourly.objects.get().hour == floor_hour(datetime.now(UTC))
    assert UsageHourly.objects.get().deployment_id == key.deployment_id


def test_the_same_batch_id_twice_counts_once(report, live_key):
    key, _secret = live_key
    body = {"batch_id": "retry-me", "records": [record(key.pk, 1, 10, 20)]}
    assert report(body).json() == {"accepted": 1}
    again = report(body)
    assert again.status_code == 202
    assert again.json() == {"accepted": 1}
    assert rows() == {str(key.pk): (1, 10, 20)}
    assert report({**body, "batch_id": "another"}).status_code == 202
    assert rows() == {str(key.pk): (2, 20, 40)}


def test_a_batch_counts_toward_a_tpm_limit_once(report, ready_deployment):
    limited, plaintext = key_services.key_create(
        deployment_id=ready_deployment.pk, name="limited", actor="t", rate_limit_tpm=100
    )
    unlimited, _ = key_services.key_create(deployment_id=ready_deployment.pk, name="u", actor="t")
    assert key_lookup(authorization=f"Bearer {plaintext}").outcome is LookupOutcome.OK
    body = {"batch_id": "tpm", "records": [record(limited.pk, 1, 40, 60), record(unlimited.pk)]}
    assert report(body).json() == {"accepted": 2}
    assert report(body).json() == {"accepted": 2}  # a replay adds no tokens either
    window = redis.Redis.from_url(settings.REDIS_URL).hvals(tpm_window(limited.public_id))
    assert sum(int(v) for v in window) == 100
    assert not redis.Redis.from_url(settings.REDIS_URL).exists(tpm_window(unlimited.public_id))
    refused = key_lookup(authorization=f"Bearer {plaintext}")
    assert refused.outcome is LookupOutcome.RATE_LIMIT_EXCEEDED


def test_a_thousand_records_in_one_batch(report, ready_deployment):
    keys = [
        key_services.key_create(deployment_id=ready_deployment.pk, name=f"k{i}", actor="t")[0]
        for i in range(10)
    ]
    records = [record(keys[i % 10].pk, 1, i, 1) for i in range(1000)]
    response = report({"batch_id": "big", "records": records})
    assert response.json() == {"accepted": 1000}
    found = rows()
    assert sum(r[0] for r in found.values()) == 1000
    assert sum(r[1] for r in found.values()) == sum(range(1000))
    assert len(found) == 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"records": [{"key_id": "x", "requests": 1, "prompt_tokens": 1, "completion_tokens": 1}]},
         "batch_id"),
        ({"batch_id": "", "records": []}, "batch_id"),
        ({"batch_id": "x" * 65, "records": []}, "batch_id"),
        ({"batch_id": 5, "records": []}, "batch_id"),
        ({"batch_id": "b", "records": []}, "records"),
        ({"batch_id": "b", "records": "x"}, "records"),
        ({"batch_id": "b"}, "records"),
        ({"batch_id": "b", "records": [{"key_id": "x", "requests": -1, "prompt_tokens": 0,
                                        "completion_tokens": 0}]}, "records"),
        ({"batch_id": "b", "records": [{"key_id": "x", "requests": 1.5, "prompt_tokens": 0,
                                        "completion_tokens": 0}]}, "records"),
        ({"batch_id": "b", "records": [{"key_id": "x", "requests": True, "prompt_tokens": 0,
                                        "completion_tokens": 0}]}, "records"),
        ({"batch_id": "b", "records": [{"key_id": "x", "requests": "1", "prompt_tokens": 0,
                                        "completion_tokens": 0}]}, "records"),
        ({"batch_id": "b", "records": [{"key_id": "x", "requests": 1}]}, "records"),
        ({"batch_id": "b", "records": ["x"]}, "records"),
        ({"batch_id": "b", "records": [record(uuid.uuid4())] * 1001}, "records"),
    ],
)  # fmt: skip
def test_a_bad_body_is_400_and_changes_nothing(report, live_key, body, field):
    key, _secret = live_key
    error = assert_error(report(body), 400, "validation_error")
    assert any(name.split(".")[0] == field for name in error["fields"]), error["fields"]
    assert rows() == {}
    # The batch id of a refused body is not spent.
    assert report({"batch_id": "b", "records": [record(key.pk)]}).json() == {"accepted": 1}


def test_not_json_and_not_an_object_are_400(report):
    assert_error(report(None, raw=b"{nope"), 400, "invalid_json")
    assert_error(report([1, 2]), 400, "validation_error")


def test_only_the_proxy_role_may_report(report, live_key):
    key, _secret = live_key
    _token, provisioner = service_token_create(name="prov", role="provisioner")
    body = {"batch_id": "b", "records": [record(key.pk)]}
    assert_error(report(body, token=provisioner), 403, "service_auth_failed")
    assert_error(report(body, token="nope"), 403, "service_auth_failed")
    assert rows() == {}


# --- the console's series ------------------------------------------------------------------------


NOW = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)


def add(key, hour: datetime, requests: int, prompt: int, completion: int) -> None:
    UsageHourly.objects.create(
        key_id=key.pk, deployment_id=key.deployment_id, hour=hour, requests=requests,
        prompt_tokens=prompt, completion_tokens=completion,
    )  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_a_keys_usage_by_hour_defaults_to_the_last_24_hours(api, live_key):
    key, _secret = live_key
    add(key, datetime(2026, 12, 2, 11, tzinfo=UTC), 9, 9, 9)  # before the window
    add(key, datetime(2026, 12, 2, 12, tzinfo=UTC), 1, 2, 3)
    add(key, datetime(2026, 12, 3, 12, tzinfo=UTC), 4, 5, 6)

    response = api.get(f"/api/v1/keys/{key.pk}/usage")

    assert response.status_code == 200
    assert response.json() == {
        "granularity": "hour",
        "since": "2026-12-02T12:30:00Z",
        "until": "2026-12-03T12:30:00Z",
        "totals": {"requests": 5, "prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
        "buckets": [
            {"start": "2026-12-02T12:00:00Z", "requests": 1, "prompt_tokens": 2,
             "completion_tokens": 3, "total_tokens": 5},
            {"start": "2026-12-03T12:00:00Z", "requests": 4, "prompt_tokens": 5,
             "completion_tokens": 6, "total_tokens": 11},
        ],
    }  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_a_deployments_usage_by_day_sums_its_keys(api, live_key, ready_deployment):
    key, _secret = live_key
    second, _ = key_services.key_create(deployment_id=ready_deployment.pk, name="b", actor="t")
    add(key, datetime(2026, 12, 1, 3, tzinfo=UTC), 1, 1, 1)
    add(second, datetime(2026, 12, 1, 20, tzinfo=UTC), 2, 2, 2)
    add(second, datetime(2026, 12, 3, 0, tzinfo=UTC), 3, 3, 3)
    elsewhere = DeploymentFactory(owner=ready_deployment.owner, ready=True)
    other_key, _ = key_services.key_create(deployment_id=elsewhere.pk, name="x", actor="t")
    add(other_key, datetime(2026, 12, 1, 3, tzinfo=UTC), 100, 100, 100)

    body = api.get(f"/api/v1/deployments/{ready_deployment.pk}/usage?granularity=day").json()

    assert body["since"] == "2026-11-03T12:30:00Z"
    assert [(b["start"], b["requests"], b["total_tokens"]) for b in body["buckets"]] == [
        ("2026-12-01T00:00:00Z", 3, 6),
        ("2026-12-03T00:00:00Z", 3, 6),
    ]
    assert body["totals"]["requests"] == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("granularity=minute", "granularity"),
        ("granularity=", "granularity"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("since=2026-12-03T00:00:00Z&until=2026-12-02T00:00:00Z", "since"),
        ("since=2026-10-01T00:00:00Z&until=2026-11-02T00:00:00Z", "since"),  # 32 days of hours
        ("granularity=day&since=2025-01-01T00:00:00Z&until=2026-12-01T00:00:00Z", "since"),
    ],
)
def test_bad_bounds_are_400(api, live_key, query, field):
    key, _secret = live_key
    error = assert_error(api.get(f"/api/v1/keys/{key.pk}/usage?{query}"), 400, "validation_error")
    assert field in error["fields"]


def test_the_widest_windows_are_allowed(api, live_key):
    key, _secret = live_key
    hours = "since=2026-10-01T00:00:00Z&until=2026-11-01T00:00:00Z"
    days = "granularity=day&since=2025-11-01T00:00:00Z&until=2026-12-05T00:00:00Z"
    assert api.get(f"/api/v1/keys/{key.pk}/usage?{hours}").status_code == 200
    assert api.get(f"/api/v1/keys/{key.pk}/usage?{days}").status_code == 200


def test_someone_elses_key_or_deployment_is_404_before_the_query_is_validated(
    other_api, live_key, ready_deployment
):
    key, _secret = live_key
    for url in (f"/api/v1/keys/{key.pk}/usage", f"/api/v1/deployments/{ready_deployment.pk}/usage"):
        assert_error(other_api.get(f"{url}?granularity=nope"), 404, "not_found")
    assert_error(other_api.get(f"/api/v1/keys/{uuid.uuid4()}/usage"), 404, "not_found")


# --- usage_24h ------------------------------------------------------------------------------------


def test_every_key_representation_has_its_last_24_hours(api, live_key, ready_deployment):
    key, _secret = live_key
    now = floor_hour(datetime.now(UTC))
    add(key, now, 2, 3, 4)
    add(key, now - timedelta(hours=23), 1, 1, 1)
    add(key, now - timedelta(hours=24), 50, 50, 50)  # older than the last 24 hours

    expected = {"requests": 3, "total_tokens": 9}
    assert api.get(f"/api/v1/keys/{key.pk}").json()["usage_24h"] == expected
    listed = {k["id"]: k["usage_24h"] for k in api.get("/api/v1/keys").json()["results"]}
    assert listed[str(key.pk)] == expected
    listed = api.get(f"/api/v1/deployments/{ready_deployment.pk}/keys").json()["results"]
    assert {k["id"]: k["usage_24h"] for k in listed}[str(key.pk)] == expected
    created = api.post(
        f"/api/v1/deployments/{ready_deployment.pk}/keys", {"name": "n"}, format="json"
    )
    assert created.json()["usage_24h"] == {"requests": 0, "total_tokens": 0}


def test_a_page_of_keys_reads_usage_in_one_query(
    api, ready_deployment, django_assert_max_num_queries
):
    for i in range(15):
        key, _ = key_services.key_create(deployment_id=ready_deployment.pk, name=f"k{i}", actor="t")
        add(key, floor_hour(datetime.now(UTC)), 1, 1, 1)
    api.get("/api/v1/keys")  # warm whatever is cached per process
    with django_assert_max_num_queries(6) as captured:
        body = api.get("/api/v1/keys").json()
    assert all(k["usage_24h"] == {"requests": 1, "total_tokens": 2} for k in body["results"])
    usage_queries = [q for q in captured.captured_queries if "usage_usagehourly" in q["sql"]]
    assert len(usage_queries) == 1


def test_batches_are_counted_once_with_redis_unreachable(report, live_key, settings):
    from buddy.core.redis import client

    key, _secret = live_key
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    client.cache_clear()
    try:
        body = {"batch_id": "no-redis", "records": [record(key.pk, 1, 1, 1)]}
        assert report(body).json() == {"accepted": 1}
        assert report(body).json() == {"accepted": 1}
    finally:
        settings.REDIS_URL = os.environ["REDIS_URL"]
        client.cache_clear()
    assert rows() == {str(key.pk): (1, 1, 1)}
