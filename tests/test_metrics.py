"""`/metrics`: lookups by outcome and their latency, keys and deployments from the database,
task failures from the worker's signal, and the multiprocess mode gunicorn's workers use."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from buddy.accounts import services as account_services
from buddy.celery import app as celery_app
from buddy.core import redis as core_redis
from buddy.core.tasks import TASK_FAILURES_KEY
from buddy.ops import metrics
from deployments.models import Deployment, DeploymentStatus
from keys import services as key_services
from keys.lookup.outcomes import LookupOutcome
from keys.lookup.selectors import key_lookup
from keys.models import ApiKey
from tests.factories import DeploymentFactory
from tests.harness.processes import subprocess_env

pytestmark = pytest.mark.django_db


@celery_app.task(name="tests.always_fails", acks_late=True, ignore_result=True)
def always_fails() -> None:
    raise RuntimeError("this task fails on purpose")


METRICS_TOKEN = "metrics-scraper-secret"


@pytest.fixture(autouse=True)
def _scraper(settings):
    """Every scrape here is the scraper's (`Bearer $BUDDY_METRICS_TOKEN`), and counts afresh."""
    settings.BUDDY_METRICS_TOKEN = METRICS_TOKEN
    metrics.forget_collected()
    yield
    metrics.forget_collected()


def _scrape(client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}} of one `/metrics` answer."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _lookups(samples, outcome: str) -> float:
    return samples.get("buddy_lookups_total", {}).get((("outcome", outcome),), 0.0)


def _key_on(
    status: str,
    *,
    gone: bool = False,
    revoked: bool = False,
    expired: bool = False,
    rate_limit_rpm: int | None = None,
) -> str:
    """The plaintext of a key whose deployment is now in `status` (or deleted, or revoked, or
    expired, or with a limit)."""
    deployment = DeploymentFactory(ready=True)
    _key, plaintext = key_services.key_create(
        deployment_id=deployment.pk, name="k", actor="t", rate_limit_rpm=rate_limit_rpm
    )
    if revoked:
        key_services.key_revoke(key_id=_key.pk, actor="t")
    if expired:
        ApiKey.objects.filter(pk=_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    if gone:
        Deployment.objects.filter(pk=deployment.pk).delete()
    elif status != DeploymentStatus.READY:
        # Placed directly in the status, as the factories do: only the lookup is under test here.
        Deployment.objects.filter(pk=deployment.pk).update(status=status)
    return plaintext


def test_metrics_count_a_lookup_of_each_outcome(client):
    ok = _key_on(DeploymentStatus.READY)
    limited = _key_on(DeploymentStatus.READY, rate_limit_rpm=1)
    key_lookup(authorization=f"Bearer {limited}")  # its one request of the minute
    cases = {
        LookupOutcome.OK: {"authorization": f"Bearer {ok}", "model": "gemma4:26b"},
        LookupOutcome.MODEL_MISMATCH: {"authorization": f"Bearer {ok}", "model": "other:1b"},
        LookupOutcome.MISSING_API_KEY: {"authorization": None},
        LookupOutcome.INVALID_API_KEY: {"authorization": "Bearer ob_sk_notakey"},
        LookupOutcome.REVOKED_API_KEY: {
            "authorization": f"Bearer {_key_on(DeploymentStatus.READY, revoked=True)}"
        },
        LookupOutcome.EXPIRED_API_KEY: {
            "authorization": f"Bearer {_key_on(DeploymentStatus.READY, expired=True)}"
        },
        LookupOutcome.RATE_LIMIT_EXCEEDED: {"authorization": f"Bearer {limited}"},
        LookupOutcome.DEPLOYMENT_NOT_FOUND: {
            "authorization": f"Bearer {_key_on(DeploymentStatus.READY, gone=True)}"
        },
        LookupOutcome.DEPLOYMENT_NOT_READY: {
            "authorization": f"Bearer {_key_on(DeploymentStatus.PROVISIONING)}"
        },
        LookupOutcome.DEPLOYMENT_STOPPED: {
            "authorization": f"Bearer {_key_on(DeploymentStatus.STOPPED)}"
        },
        LookupOutcome.DEPLOYMENT_FAILED: {
            "authorization": f"Bearer {_key_on(DeploymentStatus.FAILED)}"
        },
        LookupOutcome.DEPLOYMENT_TERMINATED: {
            "authorization": f"Bearer {_key_on(DeploymentStatus.TERMINATED)}"
        },
    }
    _token, proxy_secret = account_services.service_token_create(name="edge", role="proxy")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {proxy_secret}"}
    before = _scrape(client)
    # Through the proxy's endpoint, as the proxy asks.
    for expected, body in cases.items():
        response = client.post(
            "/internal/v1/auth/lookup", body, content_type="application/json", **auth
        )
        assert response.status_code == expected.status, (expected, response.content)
    response = client.post(
        "/internal/v1/auth/lookup", "{not json", content_type="application/json", **auth
    )
    assert response.json()["error"]["code"] == "invalid_json"
    # A rate limit needs a run of failed verifications; count one through the wrapper instead.
    metrics.record_lookup(LookupOutcome.RATE_LIMITED.code, 0.0001)
    after = _scrape(client)

    for outcome in LookupOutcome:
        label = outcome.code or "ok"
        assert _lookups(after, label) - _lookups(before, label) == 1, label
    count = "buddy_lookup_duration_seconds_count"
    assert after[count][()] - before.get(count, {}).get((), 0) == len(LookupOutcome)


def test_unknown_outcome_codes_are_counted_as_other_not_as_new_labels(client):
    before = _scrape(client)
    metrics.record_lookup("<script>", 0.001)
    after = _scrape(client)
    assert _lookups(after, "other") - _lookups(before, "other") == 1
    assert not any(
        dict(labels).get("outcome") == "<script>" for labels in after["buddy_lookups_total"]
    )


def test_keys_and_deployments_are_counted_from_the_database(client):
    ready = DeploymentFactory(ready=True)
    key_services.key_create_default(deployment_id=ready.pk)
    named, _ = key_services.key_create(deployment_id=ready.pk, name="a", actor="t")
    key_services.key_create(deployment_id=ready.pk, name="b", actor="t")
    key_services.key_revoke(key_id=named.pk, actor="t")
    DeploymentFactory(status=DeploymentStatus.PENDING)
    DeploymentFactory(status=DeploymentStatus.FAILED)

    samples = _scrape(client)
    assert samples["buddy_keys_created_total"][()] == ApiKey.objects.count() == 3
    assert samples["buddy_keys_revoked_total"] == {(("reason", "revoked_by_owner"),): 1}
    deployments = {dict(k)["status"]: v for k, v in samples["buddy_deployments"].items()}
    assert deployments == {
        "pending": 1,
        "provisioning": 0,
        "ready": 1,
        "stopped": 0,
        "failed": 1,
        "terminated": 0,
    }


def test_task_failures_are_counted_across_processes_through_redis(client):
    always_fails.apply()
    always_fails.apply()
    samples = _scrape(client)
    assert samples["buddy_task_failures_total"] == {(("task", "tests.always_fails"),): 2}
    # Redis holds the count, so a worker in another process or container adds to the same one.
    assert core_redis.client().hget(TASK_FAILURES_KEY, "tests.always_fails") == b"2"


def test_task_failures_are_counted_in_the_in_process_redis_without_redis_url(client):
    with override_settings(REDIS_URL="", EMBEDDED=True):
        core_redis.client.cache_clear()
        try:
            before = _scrape(client).get("buddy_task_failures_total", {})
            always_fails.apply()
            after = _scrape(client)["buddy_task_failures_total"]
        finally:
            core_redis.client.cache_clear()
    labels = (("task", "tests.always_fails"),)
    assert after[labels] - before.get(labels, 0) == 1


def test_multiprocess_mode_sums_the_lookups_of_every_web_worker(tmp_path, monkeypatch):
    """gunicorn's workers each write their counts to PROMETHEUS_MULTIPROC_DIR; any one of them
    answers a scrape with the sum."""
    script = (
        "import django; django.setup()\n"
        "from buddy.ops.metrics import record_lookup\n"
        "record_lookup('invalid_api_key', 0.002)\n"
        "record_lookup('', 0.0004)\n"
    )
    env = subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for _worker in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = metrics.exposition().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("buddy_lookups_total", (("outcome", "invalid_api_key"),))] == 2
    assert samples[("buddy_lookups_total", (("outcome", "ok"),))] == 2
    assert samples[("buddy_lookup_duration_seconds_count", ())] == 4
    # The database-derived families are there too, once.
    assert text.count("# TYPE buddy_deployments gauge") == 1


def test_observe_lookup_counts_and_times_each_call(client):
    before = _scrape(client)
    result = metrics.observe_lookup(key_lookup)(authorization="Bearer ob_sk_short")
    assert result.outcome is LookupOutcome.INVALID_API_KEY
    after = _scrape(client)
    assert _lookups(after, "invalid_api_key") - _lookups(before, "invalid_api_key") == 1


def test_the_gateways_lookups_are_counted_like_the_internal_endpoints(client):
    before = _scrape(client)
    response = client.post(
        "/v1/chat/completions",
        data={"model": "gemma4:26b", "messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer ob_sk_short",
    )
    assert response.status_code == 401
    after = _scrape(client)
    assert _lookups(after, "invalid_api_key") - _lookups(before, "invalid_api_key") == 1


# --- who may scrape, and how often it costs a query ------------------------------------------------


def _error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_only_the_metrics_token_may_scrape(client):
    assert _error(client.get("/metrics")) == (401, "not_authenticated")
    assert client.get("/metrics")["WWW-Authenticate"].startswith("Bearer")
    for wrong in [
        "Bearer wrong",
        f"Token {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
        "Basic eDp5",
    ]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=wrong)
        assert response.status_code in {401, 403}, wrong
    assert _error(client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")) == (
        403,
        "permission_denied",
    )
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert ok.status_code == 200 and b"buddy_deployments" in ok.content


def test_without_a_token_metrics_do_not_exist_outside_debug_and_are_open_in_debug(client, settings):
    settings.BUDDY_METRICS_TOKEN = ""
    assert _error(client.get("/metrics")) == (404, "not_found")
    assert _error(client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything")) == (
        404,
        "not_found",
    )
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200


def test_database_families_are_counted_at_most_every_gauge_interval(
    client, settings, django_assert_num_queries
):
    settings.BUDDY_METRICS_GAUGE_SECONDS = 3600
    DeploymentFactory(status=DeploymentStatus.PENDING)
    first = _scrape(client)
    assert first["buddy_deployments"][(("status", "pending"),)] == 1
    DeploymentFactory(status=DeploymentStatus.PENDING)
    with django_assert_num_queries(0):  # within the interval: not one query, however many scrapes
        for _ in range(5):
            again = _scrape(client)
    assert again["buddy_deployments"][(("status", "pending"),)] == 1
    assert again["buddy_keys_created_total"] == first["buddy_keys_created_total"]
    settings.BUDDY_METRICS_GAUGE_SECONDS = 0  # the interval has passed: counted again
    assert _scrape(client)["buddy_deployments"][(("status", "pending"),)] == 2


def test_the_api_schema_is_generated_once_per_process(client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    from buddy.http.schema_apis import forget_schemas

    generated = []
    original = SchemaGenerator.get_schema

    def counting(self, *args, **kwargs):
        generated.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counting)
    forget_schemas()
    answers = [
        client.get("/api/schema", HTTP_ACCEPT=accept)
        for accept in ["application/json", "application/yaml", "*/*"]
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json()["openapi"].startswith("3.") and b"openapi:" in answers[1].content
    assert answers[2].json() == answers[0].json()
    assert len(generated) == 1
