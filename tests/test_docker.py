"""The container image and the compose file, checked without a Docker engine (none runs here).

The compose file is loaded with PyYAML and checked for what production needs; when a compose CLI
is installed (`docker compose` or `docker-compose`) it must also accept the file.
"""

from __future__ import annotations

import os
import re
import runpy
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"
APP_SERVICES = ("migrate", "web", "gateway", "worker", "beat")


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
    for name in ("postgres", "redis", "cache", "web", "gateway", "worker", "beat"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert "interval" in check and "retries" in check, name
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "gateway", "worker", "beat"):
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
    assert re.search(r"pip install --require-hashes -r requirements.lock", text)
    assert re.search(r"pip install --no-deps \.$", text, re.MULTILINE)
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
        "buddy.usage.migrations",
        "buddy.webhooks.migrations",
        "buddy.console",
        "buddy.console.templatetags",
    } <= packages
    assert not any(p.startswith(("tests", "bench")) for p in packages)
    templates = list(root.glob("*/templates/**/*.html"))
    assert templates
    for template in templates:
        package, *rest = template.relative_to(root).parts
        assert package in packages
        assert any(fnmatch.fnmatch("/".join(rest), p) for p in config["package-data"]["*"])
    # The console's static files (htmx, Alpine.js, its CSS and script) are package data too.
    static = [p for p in (root / "buddy" / "console" / "static").rglob("*") if p.is_file()]
    assert {p.name for p in static} >= {"htmx.min.js", "alpine.min.js", "console.css"}
    for path in static:
        rest = path.relative_to(root / "buddy" / "console").as_posix()
        assert any(fnmatch.fnmatch(rest, p) for p in config["package-data"]["*"]), rest


# --- the image's build stage, assembled and booted without a Docker engine ------------------------

ROOT = DOCKER.parent


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore's rules, in order: (excludes?, pattern)). Docker's semantics: patterns are
    relative to the context's root, `*` and `?` stay within a path segment, `**` spans any number
    of them, `!` re-includes, the last matching rule wins, and a rule matching a directory
    matches everything in it."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((excludes, re.compile(regex + "(?:/.*)?")))
    return rules


def _ignored(relative: str, rules) -> bool:
    ignored = False
    for excludes, pattern in rules:
        if pattern.fullmatch(relative):
            ignored = excludes
    return ignored


def _context_files() -> list[str]:
    """Every file of the build context that .dockerignore lets through (relative paths)."""
    rules = _dockerignore_rules()
    reincludes = any(not excludes for excludes, _ in rules)
    found = []
    for directory, dirnames, filenames in os.walk(ROOT):
        here = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if here == "." else here + "/"
        if not reincludes:  # an ignored directory cannot hold a file that is let through
            dirnames[:] = [d for d in dirnames if not _ignored(prefix + d, rules)]
        found += [prefix + f for f in filenames if not _ignored(prefix + f, rules)]
    return sorted(found)


def _build_stage() -> tuple[list[tuple[list[str], str]], list[str]]:
    """The build stage's (COPY sources and destination, relative to WORKDIR) and RUN commands."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    build = stages[0]
    copies, runs = [], []
    for line in build.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "COPY":
            args = [w for w in words[1:] if not w.startswith("--")]
            assert not any(w.startswith("--from") for w in words), (
                "the build stage copies the context"
            )
            copies.append((args[:-1], args[-1]))
        elif words[0] == "RUN":
            runs.append(line.removeprefix("RUN ").strip())
    return copies, runs


def _assemble_build_context(target: Path) -> list[str]:
    """Copy into `target` what the build stage's COPY instructions would (its WORKDIR)."""
    files = _context_files()
    copies, _runs = _build_stage()
    placed = []
    for sources, destination in copies:
        for source in sources:
            source = source.rstrip("/")
            for relative in files:
                if source == ".":
                    inside = relative
                elif relative == source:
                    inside = Path(relative).name
                elif relative.startswith(source + "/"):
                    inside = relative[len(source) + 1 :]
                else:
                    continue
                out = target / destination / inside
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / relative, out)
                placed.append((Path(destination) / inside).as_posix())
    return placed


def test_dockerignore_keeps_out_what_the_image_must_not_carry_and_lets_every_app_in():
    files = _context_files()
    tops = {f.split("/")[0] for f in files}
    assert {"buddy", "deployments", "keys", "gateway", "pyproject.toml", "docker"} <= tops
    for kept_out in [
        ".git",
        ".venv",
        "tests",
        "bench",
        "db.sqlite3",
        "staticfiles",
        ".env",
        "screenshots",
    ]:
        assert kept_out not in tops, kept_out
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_the_build_stage_installs_every_installed_app_and_boots_django_from_the_install(tmp_path):
    """What the build stage copies, installed with `pip install .` into a virtualenv outside the
    source tree (dependencies are this venv's, not downloaded), must hold every app of
    INSTALLED_APPS: collectstatic (the image's build step), `check --deploy` under production
    settings, and the gateway's URLs must all work from it."""
    import sysconfig

    src = tmp_path / "src"
    placed = _assemble_build_context(src)
    assert "pyproject.toml" in {p.removeprefix("./") for p in placed}
    _copies, runs = _build_stage()
    assert any(run.endswith("pip install --no-deps .") for run in runs), runs

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # The dependencies: this venv's packages, on the path (a .pth line is not scanned for further
    # .pth files, so the source tree's own editable install of buddy does not come along). Only
    # the build backend (setuptools) is fetched, from the package index configured for pip.
    Path(site, "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def run(*args: str, cwd: Path, **environ: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, *args], cwd=cwd, env=environ or None, capture_output=True, text=True,
            check=False, timeout=300,
        )  # fmt: skip

    install = run("-m", "pip", "install", "--no-deps", "--quiet", ".", cwd=src)
    assert install.returncode == 0, install.stderr

    outside = tmp_path / "run"
    outside.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "buddy.settings",
        "STATIC_ROOT": str(tmp_path / "staticfiles"),
        "HOME": str(tmp_path),
    }

    def django(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run("-m", "django", *args, cwd=outside, **env, **extra)

    imports = "import buddy, gateway, deployments as d; print(buddy.__file__, gateway.__file__, d.__file__)"
    where = run("-c", imports, cwd=outside, **env)
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(site) for path in where.stdout.split()), where.stdout

    # The image's build step, as its RUN line runs it.
    collect = django("collectstatic", "--noinput", "--verbosity", "0", DEBUG="true")
    assert collect.returncode == 0, collect.stderr
    assert (tmp_path / "staticfiles" / "admin" / "css" / "base.css").exists()

    production = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "buddy.example.com",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "BUDDY_NUM_PROXIES": "1",
        "BUDDY_METRICS_TOKEN": "m" * 32,
    }
    check = django("check", "--deploy", **production)
    assert check.returncode == 0, check.stdout + check.stderr
    # Of Django's deployment checks only the two deliberate choices remain (README, "TLS"): HSTS
    # for subdomains and preloading are the operator's to opt into.
    security = set(re.findall(r"\(security\.(W\d+)\)", check.stdout + check.stderr))
    assert security <= {"W005", "W021"}, check.stdout + check.stderr
    resolves = (
        "import django; django.setup(); from django.urls import resolve; "
        "print(resolve('/v1/chat/completions').func.__module__, resolve('/v1/models').func.__module__)"
    )
    resolved = run("-c", resolves, cwd=outside, **env, **production)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split() == ["gateway.views", "gateway.views"]


def test_the_gateway_runs_on_uvicorn_apart_from_web_on_gunicorn(compose):
    """Slow completions, streams and uploads of /v1/ must not hold web's sync workers."""
    services = compose["services"]
    gateway = services["gateway"]["command"]
    assert gateway[:2] == ["uvicorn", "buddy.asgi:application"]
    assert "--proxy-headers" in gateway
    port = gateway[gateway.index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in services["gateway"]["ports"])
    assert port in " ".join(services["gateway"]["healthcheck"]["test"])
    # web keeps the image's command: gunicorn on buddy.wsgi.
    assert "command" not in services["web"]
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r'^CMD \["gunicorn", .*"buddy.wsgi"\]', text, re.MULTILINE)
    # The README's production section routes /v1/ to the gateway and the rest to web.
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"`/v1/`[^\n]*`gateway`", readme)
