"""buddy's one settings module: every value comes from the environment.

Production must set SECRET_KEY and ALLOWED_HOSTS (and DATABASE_URL, REDIS_URL). With DEBUG=true
(the embedded default that `make run` uses) they fall back to development values.
Booleans and integers that do not parse are an error at start-up, not a silent default.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def _derived_secret(purpose: str) -> str:
    """A secret of its own for one purpose, derived from SECRET_KEY unless set explicitly."""
    digest = hashlib.sha256(f"buddy:{purpose}:{SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


DEBUG = _bool("DEBUG", False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-secret-key-do-not-use-in-production")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
else:
    try:
        SECRET_KEY = env.str("SECRET_KEY")
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set (or DEBUG=true for the embedded development mode)"
        ) from exc
    # No `testserver` (Django's test client adds it to the tests' own settings).
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "buddy.accounts",
    "buddy.webhooks",
    "deployments",
    "buddy.usage",
    "keys",
    "gateway",
    # The web pages (issue 17): templates and static files under buddy/console/.
    "buddy.console",
]

MIDDLEWARE = [
    # First, so that every log line of the request (errors included) carries its id.
    "buddy.http.request_id.RequestIdMiddleware",
    "buddy.http.middleware.JsonErrorsMiddleware",
    # Before anything reads a body: 413 over BUDDY_MAX_BODY_BYTES / BUDDY_GATEWAY_MAX_BODY_BYTES.
    "buddy.http.body_limit.BodySizeLimitMiddleware",
    # Answers the proxy's hot path before the browser-oriented middleware below
    # (keys.lookup.middleware).
    "keys.lookup.middleware.ProxyLookupShortcutMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from gunicorn (collected into STATIC_ROOT in the image).
    "buddy.http.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # `request.htmx` for the console's partial answers (django-htmx).
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "buddy.urls"
WSGI_APPLICATION = "buddy.wsgi.application"
ASGI_APPLICATION = "buddy.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections: a connect per request costs ~8x in throughput on these machines.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default serves web requests and in-process tasks from one file.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip/brotli) made at collectstatic; no manifest, so a page renders even
    # where collectstatic has not run (tests, `make run`), where runserver serves the files.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", not DEBUG)
# Reverse proxies in front of buddy (also DRF's NUM_PROXIES below). Only behind one is the
# `X-Forwarded-Proto` header believed: without a proxy any client could send it.
BUDDY_NUM_PROXIES = env.int("BUDDY_NUM_PROXIES", default=0)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BUDDY_NUM_PROXIES > 0 else None
# HTTPS outside DEBUG unless told otherwise (README, "TLS"): plain http is redirected and browsers
# are told to keep to https (HSTS, sent only on https answers). Machines on the private network
# (probes, Prometheus, the proxy's lookups, provisioner callbacks) are not redirected: a redirect
# protects nothing there (the credential has already been sent) and would only break them.
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$", r"^internal/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)

# Request bodies (buddy.http.body_limit): the OpenAI-compatible paths carry whole conversations,
# everything else small JSON or an admin form. Over the limit: 413 before the body is read.
BUDDY_MAX_BODY_BYTES = env.int("BUDDY_MAX_BODY_BYTES", default=64 * 1024)
BUDDY_GATEWAY_MAX_BODY_BYTES = env.int("BUDDY_GATEWAY_MAX_BODY_BYTES", default=4 * 1024 * 1024)
# Django's own caps must not cut in below ours (its 2.5 MB would refuse a 3 MB chat with a bare
# 400), and a body we accept is kept in memory rather than spooled to a temporary file.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(BUDDY_MAX_BODY_BYTES, BUDDY_GATEWAY_MAX_BODY_BYTES)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE
# Form fields per request (Django's default): an admin changelist shows at most 100 rows a page,
# so an action's selection stays far below it.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# --- Redis and Celery -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# The mode, decided here once: without REDIS_URL buddy runs as the embedded default, whose every
# difference from production is listed in `buddy.core.embedded` (buddy's Redis in the process,
# tasks in-process right after the commit that sends them, the schedule in a thread).
EMBEDDED = not REDIS_URL
# The lookup cache's Redis (`keys.lookup`), empty = REDIS_URL. Production runs it apart from the
# broker's, without persistence: everything in it is rebuilt from PostgreSQL (README, Production).
BUDDY_CACHE_REDIS_URL = env.str("BUDDY_CACHE_REDIS_URL", default="")

CELERY_BROKER_URL = "memory://" if EMBEDDED else REDIS_URL
CELERY_TASK_ALWAYS_EAGER = EMBEDDED
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env.str("BUDDY_CELERY_QUEUE", default="buddy")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task a worker took but never acknowledged (the worker died) is delivered again this long after
# it was taken (Redis transport visibility timeout). It must exceed the longest task and the longest
# retry countdown (120 s), or a task still running or waiting is delivered a second time (harmless,
# tasks are idempotent, but wasted work).
BUDDY_TASK_VISIBILITY_TIMEOUT = env.int("BUDDY_TASK_VISIBILITY_TIMEOUT", default=300)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BUDDY_TASK_VISIBILITY_TIMEOUT,
    # Look for such messages every tenth of the timeout (1-10 s) rather than kombu's ~100 s.
    "unacked_restore_interval": max(1, min(10, BUDDY_TASK_VISIBILITY_TIMEOUT // 10)),
    "unacked_restore_throttle": 1,
    # The broker's keys live under their own prefix, apart from the lookup cache's.
    "global_keyprefix": env.str("BUDDY_BROKER_KEY_PREFIX", default="buddy:broker:"),
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
}
# With late acks, a task cut off by a lost broker connection is redelivered; do not also finish it.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TIMEZONE = "UTC"
# The worker logs through LOGGING above (JSON, redacted) instead of installing its own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

if not EMBEDDED:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- buddy ------------------------------------------------------------------------------------
# The simulated `local` provisioner is the embedded default's; outside DEBUG nobody is told to
# boot anything unless `BUDDY_PROVISIONER` says so.
BUDDY_PROVISIONER = env.str("BUDDY_PROVISIONER", default="local" if DEBUG else "none")
if BUDDY_PROVISIONER not in {"local", "http", "none"}:
    raise ImproperlyConfigured("BUDDY_PROVISIONER must be one of local, http, none")
BUDDY_PROVISIONER_URL = env.str("BUDDY_PROVISIONER_URL", default="")
if BUDDY_PROVISIONER == "http" and not BUDDY_PROVISIONER_URL:
    raise ImproperlyConfigured("BUDDY_PROVISIONER=http needs BUDDY_PROVISIONER_URL")

# Active keys a deployment may hold, the default key included.
BUDDY_MAX_KEYS_PER_DEPLOYMENT = env.int("BUDDY_MAX_KEYS_PER_DEPLOYMENT", default=20)
# How long after its creation the default key's secret can still be revealed.
BUDDY_DEFAULT_KEY_REVEAL_TTL = timedelta(
    seconds=env.int("BUDDY_DEFAULT_KEY_REVEAL_TTL_SECONDS", default=24 * 3600)
)

# argon2id parameters of stored key hashes. Keys carry ~178 random bits, so light parameters
# resist guessing as well as heavy ones; what they must not do is make a verify expensive.
BUDDY_ARGON2_TIME_COST = env.int("BUDDY_ARGON2_TIME_COST", default=2)
BUDDY_ARGON2_MEMORY_COST = env.int("BUDDY_ARGON2_MEMORY_COST", default=19456)  # KiB
BUDDY_ARGON2_PARALLELISM = env.int("BUDDY_ARGON2_PARALLELISM", default=1)

# Key for sealing the default key's secret until its reveal (Fernet, urlsafe base64 of 32 bytes).
BUDDY_SEALING_KEY = env.str("BUDDY_SEALING_KEY", default="") or _derived_secret("sealing")
# Server-side pepper of the HMAC that matches a presented key against the lookup cache.
BUDDY_LOOKUP_CACHE_PEPPER = env.str("BUDDY_LOOKUP_CACHE_PEPPER", default="") or _derived_secret(
    "lookup-cache"
)

# --- the OpenAI-compatible gateway (/v1/) and the built-in model server (/local-model/v1/) ---
# Sent upstream as `Authorization: Bearer ...` when set (never the client's ob_sk_ key). One
# credential for every model server; per-deployment credentials are not supported.
BUDDY_UPSTREAM_API_KEY = env.str("BUDDY_UPSTREAM_API_KEY", default="")
BUDDY_UPSTREAM_CONNECT_TIMEOUT_SECONDS = env.float(
    "BUDDY_UPSTREAM_CONNECT_TIMEOUT_SECONDS", default=10.0
)
# The longest silence allowed between two pieces of an upstream's answer (the first piece of a
# non-streamed completion comes only when it is complete, so this also bounds its generation).
BUDDY_UPSTREAM_READ_TIMEOUT_SECONDS = env.float(
    "BUDDY_UPSTREAM_READ_TIMEOUT_SECONDS", default=600.0
)
# The built-in model server: on by default only in DEBUG with the `local` provisioner; anywhere
# else only when asked for.
BUDDY_LOCAL_MODEL_ENABLED = _bool(
    "BUDDY_LOCAL_MODEL_ENABLED", DEBUG and BUDDY_PROVISIONER == "local"
)
# --- /metrics (buddy.ops.metrics) ---
# The Prometheus scraper's credential (`Authorization: Bearer ...`). Unset: /metrics is 404
# outside DEBUG, open in DEBUG.
BUDDY_METRICS_TOKEN = env.str("BUDDY_METRICS_TOKEN", default="")
# Families that cost a query (keys, deployments) are counted at most this often per process.
BUDDY_METRICS_GAUGE_SECONDS = env.float("BUDDY_METRICS_GAUGE_SECONDS", default=15.0)
# Networks model servers may be on (comma-separated CIDRs, e.g. `10.20.0.0/16,fd00::/8`): an
# `endpoint_url` whose host resolves outside them is refused. Empty (the default): any address.
BUDDY_UPSTREAM_ALLOWED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
for _cidr in env.list("BUDDY_UPSTREAM_ALLOWED_NETWORKS", default=[]):
    if not _cidr.strip():
        continue
    try:
        BUDDY_UPSTREAM_ALLOWED_NETWORKS += (ipaddress.ip_network(_cidr.strip(), strict=False),)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"BUDDY_UPSTREAM_ALLOWED_NETWORKS: {_cidr!r} is not a network (CIDR)"
        ) from exc
# A relayed stream looks its key up again at most this often (one Redis round trip on a hit) and
# ends with an error event once the key or its deployment no longer qualifies.
BUDDY_STREAM_RECHECK_SECONDS = env.float("BUDDY_STREAM_RECHECK_SECONDS", default=5.0)
# The longest a relayed stream may last, whatever the model server does (30 minutes).
BUDDY_STREAM_MAX_SECONDS = env.float("BUDDY_STREAM_MAX_SECONDS", default=1800.0)
# --- the proxy lookup (keys.lookup) -----------------------------
# How long a verified lookup stays in Redis; must stay below the tombstones' 24 h.
BUDDY_LOOKUP_CACHE_TTL_SECONDS = env.int("BUDDY_LOOKUP_CACHE_TTL_SECONDS", default=300)
if not 0 < BUDDY_LOOKUP_CACHE_TTL_SECONDS < 24 * 3600:
    raise ImproperlyConfigured("BUDDY_LOOKUP_CACHE_TTL_SECONDS must be between 1 and 86399")
# Failed verifications of one public id within the window before lookups answer 429.
BUDDY_LOOKUP_FAILURE_LIMIT = env.int("BUDDY_LOOKUP_FAILURE_LIMIT", default=10)
BUDDY_LOOKUP_FAILURE_WINDOW_SECONDS = env.int("BUDDY_LOOKUP_FAILURE_WINDOW_SECONDS", default=60)
# argon2 verifications running at once in one web process, and how long a lookup waits for one.
BUDDY_LOOKUP_MAX_CONCURRENT_VERIFICATIONS = env.int(
    "BUDDY_LOOKUP_MAX_CONCURRENT_VERIFICATIONS", default=2
)
BUDDY_LOOKUP_VERIFY_WAIT_SECONDS = env.float("BUDDY_LOOKUP_VERIFY_WAIT_SECONDS", default=2.0)
# How long a web process trusts a service token it has verified (a revoked one stops within it).
BUDDY_LOOKUP_SERVICE_TOKEN_CACHE_SECONDS = env.float(
    "BUDDY_LOOKUP_SERVICE_TOKEN_CACHE_SECONDS", default=10.0
)
# Last use of keys: each web process hands it on every few seconds (to Redis, or without Redis
# to the database), and beat writes Redis' batch to the database every interval.
BUDDY_LOOKUP_LAST_USED_LOCAL_FLUSH_SECONDS = env.float(
    "BUDDY_LOOKUP_LAST_USED_LOCAL_FLUSH_SECONDS", default=10.0
)
BUDDY_LOOKUP_LAST_USED_FLUSH_SECONDS = env.float(
    "BUDDY_LOOKUP_LAST_USED_FLUSH_SECONDS", default=30.0
)
# Usage metering (README "Usage"): each web process hands its counts to Redis every
# BUDDY_USAGE_LOCAL_FLUSH_SECONDS, beat moves Redis' counts into the hourly rollup every
# BUDDY_USAGE_FLUSH_SECONDS (their sum bounds how late usage shows: at most 60 s, checked here),
# and folds hourly rows older than BUDDY_USAGE_HOURLY_RETENTION_DAYS into daily rows.
BUDDY_USAGE_RECORDING = _bool("BUDDY_USAGE_RECORDING", True)
BUDDY_USAGE_LOCAL_FLUSH_SECONDS = env.float("BUDDY_USAGE_LOCAL_FLUSH_SECONDS", default=5.0)
BUDDY_USAGE_FLUSH_SECONDS = env.float("BUDDY_USAGE_FLUSH_SECONDS", default=20.0)
if not (
    BUDDY_USAGE_LOCAL_FLUSH_SECONDS > 0
    and BUDDY_USAGE_FLUSH_SECONDS > 0
    and BUDDY_USAGE_LOCAL_FLUSH_SECONDS + BUDDY_USAGE_FLUSH_SECONDS <= 50
):
    raise ImproperlyConfigured(
        "BUDDY_USAGE_LOCAL_FLUSH_SECONDS and BUDDY_USAGE_FLUSH_SECONDS must be positive and sum "
        "to at most 50 (usage is visible within 60 s)"
    )
BUDDY_USAGE_HOURLY_RETENTION_DAYS = env.int("BUDDY_USAGE_HOURLY_RETENTION_DAYS", default=90)
if BUDDY_USAGE_HOURLY_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("BUDDY_USAGE_HOURLY_RETENTION_DAYS must be at least 1")
BUDDY_USAGE_FOLD_SECONDS = env.float("BUDDY_USAGE_FOLD_SECONDS", default=3600.0)

# --- Django REST framework --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "buddy.http.schema.BuddyAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["buddy.http.api.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "buddy.http.api.JsonNegotiation",
    # The token first: an unauthenticated request is then 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "buddy.http.api.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "buddy.http.api.ConsolePagination",
    "PAGE_SIZE": env.int("BUDDY_PAGE_SIZE", default=50),
    "DEFAULT_THROTTLE_RATES": {
        # Failed `POST /api/v1/auth/token` attempts per client address, and per username (from
        # any address); the address's limit is the higher, as many users may share one address.
        "console_token_failures": env.str("BUDDY_TOKEN_FAILURE_RATE", default="30/min"),
        "console_token_failures_per_username": env.str(
            "BUDDY_TOKEN_FAILURE_RATE_PER_USERNAME", default="10/hour"
        ),
    },
    # Reverse proxies in front of buddy: throttles key on the client address they report.
    # 0 (the default) trusts only REMOTE_ADDR, so a forged X-Forwarded-For changes nothing.
    "NUM_PROXIES": BUDDY_NUM_PROXIES,
    "EXCEPTION_HANDLER": "buddy.http.errors.api_exception_handler",
}
for _scope, _rate in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].items():
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", _rate):
        raise ImproperlyConfigured(f"throttle rate of {_scope}: {_rate!r} is not like 10/min")
CSRF_FAILURE_VIEW = "buddy.http.errors.csrf_failure"

REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": timedelta(hours=env.int("BUDDY_CONSOLE_TOKEN_TTL_HOURS", default=24 * 30)),
    "AUTO_REFRESH": False,
    # Console tokens are `ob_con_<64 hex>`: log redaction and secret scanners recognise them.
    "TOKEN_PREFIX": "ob_con_",
}
# Live console tokens one user may hold; signing in at the cap revokes the oldest
# (`buddy.accounts.services.console_token_issue`).
BUDDY_CONSOLE_TOKENS_PER_USER = env.int("BUDDY_CONSOLE_TOKENS_PER_USER", default=10)
if BUDDY_CONSOLE_TOKENS_PER_USER < 1:
    raise ImproperlyConfigured("BUDDY_CONSOLE_TOKENS_PER_USER must be at least 1")

SPECTACULAR_SETTINGS = {
    "TITLE": "buddy API",
    "DESCRIPTION": (
        "Control plane of the OpenLLM Buddy console. Every error answers "
        '`{"error": {"message", "type", "code", "param"}}` (+ `fields` for validation errors).'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page's Swagger UI is served from our own static files (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False},
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "ENUM_NAME_OVERRIDES": {
        "DeploymentStatusEnum": "deployments.models.DeploymentStatus",
        "KeyStatusEnum": ["active", "revoked"],
        "EventKindEnum": "deployments.models.EventKind",
        "ErrorTypeEnum": [
            "invalid_request_error",
            "authentication_error",
            "rate_limit_error",
            "server_error",
        ],
    },
}

# --- logs ---------------------------------------------------------------------------------------
# One line per record on stderr: JSON outside DEBUG, text in development. Every line carries the
# request id (`buddy.http.request_id`), and secrets are redacted from messages, arguments and the
# finished line (`buddy.ops.logging`).
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or text")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "buddy.ops.logging.RequestIdFilter"},
        "redact_secrets": {"()": "buddy.ops.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "json": {"()": "buddy.ops.logging.JsonFormatter"},
        "text": {"()": "buddy.ops.logging.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own handlers would print its records a second time, unformatted.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "celery": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

# --- provisioning and periodic work -------------------------------------------------------------
BUDDY_PROVISIONER_TIMEOUT = env.float("BUDDY_PROVISIONER_TIMEOUT", default=10.0)
# How many times a task retries a transient provisioner failure before giving up.
BUDDY_PROVISIONER_MAX_RETRIES = env.int("BUDDY_PROVISIONER_MAX_RETRIES", default=5)
# `local` provisioner: how long the simulated boot takes, and the endpoint it reports
# (buddy's own built-in model endpoint).
BUDDY_LOCAL_BOOT_SECONDS = env.float("BUDDY_LOCAL_BOOT_SECONDS", default=3.0)
BUDDY_LOCAL_ENDPOINT_URL = env.str(
    "BUDDY_LOCAL_ENDPOINT_URL",
    default=f"http://127.0.0.1:{env.int('PORT', default=8000)}/local-model",
)
BUDDY_EXPIRY_INTERVAL_SECONDS = env.float("BUDDY_EXPIRY_INTERVAL_SECONDS", default=30.0)
BUDDY_EXPIRY_BATCH_SIZE = env.int("BUDDY_EXPIRY_BATCH_SIZE", default=500)
BUDDY_RECONCILE_INTERVAL_SECONDS = env.float("BUDDY_RECONCILE_INTERVAL_SECONDS", default=180.0)
# Deployments the reconciler repairs per kind and run (the next run takes the rest).
BUDDY_RECONCILE_BATCH_SIZE = env.int("BUDDY_RECONCILE_BATCH_SIZE", default=200)
# Keys revoked per transaction when a deployment ends (each batch commits on its own, so a worker
# that dies mid-way leaves whole batches done and the redelivered task does the rest).
BUDDY_REVOKE_BATCH_SIZE = env.int("BUDDY_REVOKE_BATCH_SIZE", default=500)

# A boot still pending, or a teardown still unconfirmed, this long after it was due is asked for
# again by the reconciler. Longer than the provisioner's own retries, so it does not race them.
BUDDY_RECONCILE_STALE_SECONDS = env.int("BUDDY_RECONCILE_STALE_SECONDS", default=900)

# How often beat writes the lookup-cache guards that a change could not write to Redis and left
# owed in PostgreSQL (`keys.lookup.guards`): the longest a revoked key's entry can still answer when
# Redis was out of reach for the revoking process only, and that process died.
BUDDY_LOOKUP_PENDING_GUARDS_SECONDS = env.float("BUDDY_LOOKUP_PENDING_GUARDS_SECONDS", default=5.0)

# --- webhooks (buddy.webhooks) and leak reports (keys.leaks) -------------------------------------
BUDDY_WEBHOOKS_PER_USER = env.int("BUDDY_WEBHOOKS_PER_USER", default=10)
# Webhook URLs over plain http, or to loopback/private/link-local addresses: refused outside DEBUG
# unless this is true (a receiver on the operator's own network; the test suite).
BUDDY_WEBHOOK_ALLOW_PRIVATE = _bool("BUDDY_WEBHOOK_ALLOW_PRIVATE", False)
# Seconds to wait before each retry of a failed attempt; after the last, the delivery is `failed`.
_retry_schedule = env.str(
    "BUDDY_WEBHOOK_RETRY_SCHEDULE", default="5,300,1800,7200,18000,36000,36000"
)
try:
    BUDDY_WEBHOOK_RETRY_SCHEDULE = tuple(
        int(part) for part in _retry_schedule.split(",") if part.strip()
    )
except ValueError:
    raise ImproperlyConfigured(
        "BUDDY_WEBHOOK_RETRY_SCHEDULE must be whole seconds, comma-separated"
    ) from None
if any(delay < 0 for delay in BUDDY_WEBHOOK_RETRY_SCHEDULE):
    raise ImproperlyConfigured("BUDDY_WEBHOOK_RETRY_SCHEDULE: delays cannot be negative")
BUDDY_WEBHOOK_TIMEOUT_SECONDS = env.float("BUDDY_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# An endpoint whose every attempt has failed for this long is disabled (with a reason).
BUDDY_WEBHOOK_DISABLE_AFTER = timedelta(
    seconds=env.int("BUDDY_WEBHOOK_DISABLE_AFTER_SECONDS", default=3 * 24 * 3600)
)
# Events (with their deliveries) older than this that owe nothing more are deleted by beat (hourly).
BUDDY_WEBHOOK_RETENTION_DAYS = env.int("BUDDY_WEBHOOK_RETENTION_DAYS", default=30)
# How often beat re-sends the delivery task for endpoints with a delivery due (retries, lost
# messages, killed workers); a retry due sooner than this is scheduled by the task itself.
BUDDY_WEBHOOK_REDRIVE_SECONDS = env.float("BUDDY_WEBHOOK_REDRIVE_SECONDS", default=10.0)
# How long one run of the delivery task works for one endpoint before it yields its worker slot.
BUDDY_WEBHOOK_TASK_BUDGET_SECONDS = env.float("BUDDY_WEBHOOK_TASK_BUDGET_SECONDS", default=30.0)
# `deployment.pack_ending` is sent this long before `pack_ends_at` (once per value of it); beat
# looks for such packs every BUDDY_PACK_ENDING_INTERVAL_SECONDS.
BUDDY_PACK_ENDING_NOTICE_SECONDS = env.int("BUDDY_PACK_ENDING_NOTICE_SECONDS", default=3600)
BUDDY_PACK_ENDING_INTERVAL_SECONDS = env.float("BUDDY_PACK_ENDING_INTERVAL_SECONDS", default=60.0)
# GitHub's secret-scanning public keys (ECDSA P-256), which sign the leak reports it sends to
# `POST /internal/v1/secret-scanning`.
BUDDY_SECRET_SCANNING_KEYS_URL = env.str(
    "BUDDY_SECRET_SCANNING_KEYS_URL",
    default="https://api.github.com/meta/public_keys/secret_scanning",
)

CELERY_BEAT_SCHEDULE = {
    "webhooks-redrive": {
        "task": "webhooks.redrive",
        "schedule": BUDDY_WEBHOOK_REDRIVE_SECONDS,
        "options": {"expires": BUDDY_WEBHOOK_REDRIVE_SECONDS},
    },
    "webhooks-prune": {
        "task": "webhooks.prune",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "pack-ending-notices": {
        "task": "deployments.notify_pack_ending",
        "schedule": BUDDY_PACK_ENDING_INTERVAL_SECONDS,
        "options": {"expires": BUDDY_PACK_ENDING_INTERVAL_SECONDS},
    },
    "expire-packs": {
        "task": "deployments.expire_packs",
        "schedule": BUDDY_EXPIRY_INTERVAL_SECONDS,
        "options": {"expires": BUDDY_EXPIRY_INTERVAL_SECONDS},
    },
    "reconcile": {
        "task": "keys.reconcile",
        "schedule": BUDDY_RECONCILE_INTERVAL_SECONDS,
        "options": {"expires": BUDDY_RECONCILE_INTERVAL_SECONDS},
    },
    "reconcile-deployments": {
        "task": "deployments.reconcile",
        "schedule": BUDDY_RECONCILE_INTERVAL_SECONDS,
        "options": {"expires": BUDDY_RECONCILE_INTERVAL_SECONDS},
    },
    "flush-last-used": {
        "task": "keys.flush_last_used",
        "schedule": BUDDY_LOOKUP_LAST_USED_FLUSH_SECONDS,
        "options": {"expires": BUDDY_LOOKUP_LAST_USED_FLUSH_SECONDS},
    },
    "write-pending-guards": {
        "task": "keys.write_pending_guards",
        "schedule": BUDDY_LOOKUP_PENDING_GUARDS_SECONDS,
        "options": {"expires": BUDDY_LOOKUP_PENDING_GUARDS_SECONDS},
    },
    "flush-usage": {
        "task": "usage.flush",
        "schedule": BUDDY_USAGE_FLUSH_SECONDS,
        "options": {"expires": BUDDY_USAGE_FLUSH_SECONDS},
    },
    "fold-usage": {
        "task": "usage.fold",
        "schedule": BUDDY_USAGE_FOLD_SECONDS,
        "options": {"expires": BUDDY_USAGE_FOLD_SECONDS},
    },
}
# The embedded default has no beat process: the web process runs the same schedule in a thread.
BUDDY_EMBEDDED_SCHEDULER = _bool("BUDDY_EMBEDDED_SCHEDULER", EMBEDDED)

# --- admin sign-in lockout (django-axes; see buddy.accounts.lockout) ----------------------------
# Failed `/admin/login/` attempts are kept in the database; a username is locked (from every
# address) at BUDDY_ADMIN_LOGIN_FAILURES_PER_USERNAME failures, an address (for every username)
# at BUDDY_ADMIN_LOGIN_FAILURES_PER_ADDRESS, for BUDDY_ADMIN_LOGIN_LOCKOUT_MINUTES after the last
# failure. The check runs before any password is hashed. Unlock: `manage.py axes_reset_username
# NAME`, `axes_reset_ip ADDRESS` or `axes_reset`.
INSTALLED_APPS.append("axes")
# Last, as axes asks: it turns a locked-out sign-in into its lockout page.
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = _bool("BUDDY_ADMIN_LOCKOUT_ENABLED", True)
AXES_HANDLER = "buddy.accounts.lockout.AdminLoginLockoutHandler"
AXES_ONLY_ADMIN_SITE = True
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = 1  # the handler answers 1 once either limit below is reached
BUDDY_ADMIN_LOGIN_FAILURES_PER_USERNAME = env.int(
    "BUDDY_ADMIN_LOGIN_FAILURES_PER_USERNAME", default=5
)
BUDDY_ADMIN_LOGIN_FAILURES_PER_ADDRESS = env.int(
    "BUDDY_ADMIN_LOGIN_FAILURES_PER_ADDRESS", default=20
)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("BUDDY_ADMIN_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_CLIENT_IP_CALLABLE = "buddy.accounts.lockout.client_address"
AXES_LOCKOUT_TEMPLATE = "admin/accounts/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# A success must not wipe the address's failures (one valid account would reset them).
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False
