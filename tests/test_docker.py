"""The container image and the compose file, checked without a Docker engine (none runs here).

The compose file is loaded with PyYAML and checked for what production needs; when a compose CLI
is installed (`docker compose` or `docker-compose`) it must also accept the file.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"
APP_SERVICES = ("migrate", "web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _compose_clis() -> list[list[str]]:
    """The compose CLIs installed here (`docker compose` v2, `docker-compose` v1)."""
    found = []
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        version = subprocess.run([*cli, "version"], capture_output=True, check=False, timeout=60)
        if version.returncode == 0:
            found.append(cli)
    return found


def _compose_config(cli: list[str], **secrets: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "POSTGRES_PASSWORD"}}
    return subprocess.run(
        [*cli, "-f", str(DOCKER / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={**env, **secrets},
        check=False,
        timeout=60,
    )


def test_compose_runs_postgres_redis_migrate_web_worker_and_beat(compose):
    # Where a compose CLI is installed it validates the file against the compose spec too, and
    # refuses it without the mandatory secrets.
    for cli in _compose_clis():
        accepted = _compose_config(cli, SECRET_KEY="s", POSTGRES_PASSWORD="p")
        assert accepted.returncode == 0, accepted.stderr
        assert _compose_config(cli).returncode != 0
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "cache", *APP_SERVICES}
    assert "noeviction" in services["redis"]["command"]
    assert services["migrate"]["command"] == ["django-admin", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"
    assert services["web"]["ports"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "buddy", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "buddy", "beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    for name in APP_SERVICES:
        assert services[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}


def test_every_long_running_service_has_a_health_check_and_waits_for_what_it_needs(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "cache", "web", "worker", "beat"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert "interval" in check and "retries" in check, name
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
            "cache": {"condition": "service_healthy"},
        }


def test_the_lookup_cache_runs_apart_on_a_redis_without_persistence(compose):
    """A restored snapshot is what must never answer (keys.lookup): the cache's Redis has no RDB,
    no AOF and no volume, and nothing of it is evicted (noeviction)."""
    cache = compose["services"]["cache"]
    command = cache["command"]
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "volumes" not in cache
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["BUDDY_CACHE_REDIS_URL"] == "redis://cache:6379/0"
        assert env["REDIS_URL"] == "redis://redis:6379/0"


def test_secrets_come_from_the_environment_never_from_the_file(compose):
    text = (DOCKER / "compose.yaml").read_text()
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}"
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["LOG_FORMAT"] == "json"
    assert not re.search(r"(PASSWORD|SECRET_KEY):\s+[^$\s]", text)


def test_dockerfile_is_slim_non_root_gunicorn_with_a_health_check():
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages and all(image == "python:3.11-slim" for image in stages)
    assert "pip install ." in text
    assert "collectstatic" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert re.search(
        r'^CMD \["gunicorn", "--config", "/app/gunicorn.conf.py", "buddy.wsgi"\]',
        text,
        re.MULTILINE,
    )
    copied = re.findall(r"^COPY (?:--from=\S+ )?(\S+)", text, re.MULTILINE)
    assert "docker/gunicorn.conf.py" in copied


def test_gunicorn_config_empties_the_metrics_directory_and_forgets_dead_workers(
    tmp_path, monkeypatch
):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_123.db").write_bytes(b"stale")
    (metrics_dir / "gauge_livesum_4242.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    config = runpy.run_path(str(DOCKER / "gunicorn.conf.py"))
    assert config["workers"] == 3
    assert config["accesslog"] is None
    assert list(metrics_dir.iterdir()) == []  # a new run does not add the previous one's counts

    (metrics_dir / "gauge_livesum_4242.db").write_bytes(b"")

    class Worker:
        pid = 4242

    config["child_exit"](None, Worker())
    assert not (metrics_dir / "gauge_livesum_4242.db").exists()


def test_packaging_carries_migrations_commands_and_admin_templates():
    """The image installs buddy with `pip install .` (not from the source tree): the package list
    must reach the subpackages, and the package data the admin's templates."""
    import fnmatch
    import tomllib

    from setuptools import find_packages

    root = DOCKER.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(find_packages(where=str(root), include=config["packages"]["find"]["include"]))
    assert {
        "buddy",
        "buddy.core",
        "buddy.http",
        "buddy.ops",
        "buddy.accounts",
        "buddy.accounts.migrations",
        "buddy.accounts.management.commands",
        "deployments.migrations",
        "keys.migrations",
        "keys.lookup",
    } <= packages
    assert not any(p.startswith(("tests", "bench")) for p in packages)
    templates = list(root.glob("*/templates/**/*.html"))
    assert templates
    for template in templates:
        package, *rest = template.relative_to(root).parts
        assert package in packages
        assert any(fnmatch.fnmatch("/".join(rest), p) for p in config["package-data"]["*"])
