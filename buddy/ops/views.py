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
from buddy.ops.metrics import exposition


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
    """Prometheus text exposition (no authentication: expose it on the internal network only)."""
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
