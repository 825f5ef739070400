"""Operations endpoints: `/healthz` (alive, no I/O), `/readyz` (database and Redis reachable) and
`/metrics` (Prometheus)."""

from __future__ import annotations

import redis
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from buddy.core import errors
from buddy.core.redis import client
from buddy.http.errors import error_response
from buddy.ops.metrics import exposition, scrape_refusal


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _redis_ok() -> bool:
    """buddy's Redis answers (in the embedded default, the in-process one always does)."""
    try:
        return bool(client().ping())
    except redis.RedisError:
        return False


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "redis": _redis_ok()}
    if all(checks.values()):
        return JsonResponse({"status": "ready", "checks": checks})
    failed = ", ".join(name for name, ok in checks.items() if not ok)
    return error_response(errors.NOT_READY, message=f"Not ready: {failed} unreachable.")


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition, for `Authorization: Bearer $BUDDY_METRICS_TOKEN` only."""
    refusal = scrape_refusal(request.headers.get("Authorization"))
    if refusal is errors.NOT_AUTHENTICATED:
        return error_response(refusal, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    if refusal is not None:
        return error_response(refusal)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
