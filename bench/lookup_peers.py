"""The two servers `bench/lookup.py` measures buddy's lookup against, as one small Django project
(this module is its settings, URLs and views; gunicorn serves `lookup_peers:application`):

- `POST /plain`: the limit sketch of this design in Django: a plain view with no middleware that
  checks the service token, parses the body and answers from one Redis GET and one HMAC compare;
- `POST /drf`: djangorestframework-api-key's `HasAPIKey` on a DRF view (its key model in
  PostgreSQL, checked on every request), the peer a team would reach for first.

`python bench/lookup_peers.py setup N` migrates the peer's tables and prints N new API keys.
Environment: DATABASE_URL, REDIS_URL, BENCH_SERVICE_TOKEN, BENCH_PEPPER.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from urllib.parse import urlsplit

SECRET_KEY = "bench-peers-not-for-production"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "lookup_peers"
MIDDLEWARE: list[str] = []
INSTALLED_APPS = ["rest_framework", "rest_framework_api_key"]
_db = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/buddy_bench"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "PASSWORD": _db.password or "",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": _db.port or 5432,
        "CONN_MAX_AGE": 600,
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lookup_peers")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from rest_framework_api_key.permissions import HasAPIKey  # noqa: E402

_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"))
_PEPPER = os.environ.get("BENCH_PEPPER", "bench-pepper").encode()
_SERVICE = f"Bearer {os.environ.get('BENCH_SERVICE_TOKEN', '')}"
_FORBIDDEN = b'{"error": {"code": "service_auth_failed"}}'
_UNAUTHORIZED = b'{"error": {"code": "invalid_api_key"}}'


def plain(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    if not hmac.compare_digest(request.META.get("HTTP_AUTHORIZATION", ""), _SERVICE):
        return HttpResponse(_FORBIDDEN, status=403, content_type="application/json")
    try:
        body = json.loads(request.body)
        key = body["authorization"][len("Bearer ") :]
    except (ValueError, KeyError, TypeError):
        return HttpResponse(status=400)
    entry = _redis.get(f"peer:{key[6:18]}")
    if entry is not None:
        digest, _, answer = entry.partition(b"|")
        presented = hmac.new(_PEPPER, key.encode(), hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(digest, presented):
            return HttpResponse(answer, content_type="application/json")
    return HttpResponse(_UNAUTHORIZED, status=401, content_type="application/json")


class DrfLookup(APIView):
    authentication_classes: list[type] = []
    permission_classes = [HasAPIKey]

    def post(self, request: Request) -> Response:
        return Response({"model": request.data.get("model"), "ok": True})


urlpatterns = [path("plain", plain), path("drf", DrfLookup.as_view())]
application = get_wsgi_application()


def setup(count: int) -> None:
    from django.core.management import call_command
    from rest_framework_api_key.models import APIKey

    call_command("migrate", verbosity=0)
    for i in range(count):
        _, key = APIKey.objects.create_key(name=f"bench-{i}")
        print(key)


if __name__ == "__main__" and sys.argv[1:2] == ["setup"]:
    setup(int(sys.argv[2]))
