"""gunicorn settings of buddy's web process (the container image's default command).

Every value can be overridden from the environment. Several workers each serve requests, so the
Prometheus counters of lookups run in prometheus-client's multiprocess mode: each worker writes
its counts to PROMETHEUS_MULTIPROC_DIR and any worker answers `/metrics` with the sum.
"""

import os
import shutil

# Set before anything imports prometheus_client: workers fork from this process and its choice
# of value storage (files, in multiprocess mode) is made when prometheus_client is imported.
# Emptied at start (counts of a previous run would be summed with this one's), before the
# logging set-up below imports buddy.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/buddy-metrics")  # noqa: S108
shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers: a request holds a worker for its duration (lookups take milliseconds).
# Rule of thumb: 2-4 per core of the container; scale out with more containers.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Heartbeat files in memory, not on the container's (possibly slow, overlay) disk.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR", "/dev/shm")  # noqa: S108
# Only the proxy in front may say a request came over HTTPS (SECURE_PROXY_SSL_HEADER).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# buddy logs each request itself (`buddy.access`, JSON, with its request id); gunicorn's own
# lines go out as JSON too.
accesslog = None
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "buddy.ops.logging.JsonFormatter"}},
    "filters": {"redact_secrets": {"()": "buddy.ops.logging.RedactSecretsFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["redact_secrets"],
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}


def child_exit(server, worker):
    """A dead worker's counters stay counted; only its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
