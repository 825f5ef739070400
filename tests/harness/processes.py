"""buddy's own processes, started by the tests the way they are deployed: the web server
(uvicorn on buddy.asgi, or gunicorn on buddy.wsgi) and Celery's worker and beat (no eager mode).

Each runs in a process group of its own (so stopping it stops its workers and pool children too),
logs to a file whose tail goes into the failure message when it dies, and is configured by
`subprocess_env`: pytest-django's *test* database, the test Redis and this process's SECRET_KEY
(what one side seals the other unseals). Tests that use one must commit their data
(`transactional_db`; `@pytest.mark.celery_worker` brings it).

The session's worker (`tests/conftest.py`) provisions through the `http` provisioner against the
fake orchestrator, revokes keys in small batches (so that a revocation can be caught in the
middle) and has a short visibility timeout (so that the task of a killed worker comes back within
seconds): the `WORKER_*` values below, which tests rely on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
from celery import Celery
from django.conf import settings

from tests.harness.db import database_url_of_tests
from tests.harness.ports import free_port
from tests.harness.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]

# What the session's worker is configured with (tests rely on these).
WORKER_VISIBILITY_TIMEOUT = 4
WORKER_REVOKE_BATCH_SIZE = 5
WORKER_PROVISIONER_MAX_RETRIES = 2
WORKER_LOCAL_ENDPOINT_URL = "http://127.0.0.1:9/local-model"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a buddy process the tests start: this one's, on the test database and
    Redis, with this process's SECRET_KEY, not in debug mode; `extra` on top."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "buddy.settings",
        "DATABASE_URL": database_url_of_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "BUDDY_PROVISIONER": "none",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class Process:
    """A command run from the repository's root in a process group of its own, logging to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until_up(self, is_up: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Wait for `is_up()`; fail with the log's tail if the process exits first."""

        def up() -> bool:
            if not self.alive():
                raise AssertionError(f"{what}: the process exited\n{self.log_tail()}")
            return is_up()

        wait_until(up, timeout=timeout, interval=0.2, what=what)

    def _signal_group(self, sig: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group: the main process and its children, mid-whatever."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(20)
        self.process = None

    def stop(self) -> None:
        """SIGTERM the whole group; SIGKILL it if it is not gone within 30 s."""
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(20)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- the web server -------------------------------------------------------------------------------


def _server_argv(server: Literal["uvicorn", "gunicorn"], port: int, workers: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "buddy.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "buddy.wsgi", "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
    ]  # fmt: skip


def _answers_healthz(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _start_server(
    server: Literal["uvicorn", "gunicorn"], workers: int, env: dict[str, str], log_path: Path
) -> tuple[Process, str]:
    """Start the server on a free port and wait until it answers /healthz or exits."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = Process(_server_argv(server, port, workers), env, log_path)
    process.start()
    wait_until(
        lambda: not process.alive() or _answers_healthz(url),
        timeout=90,
        interval=0.2,
        what=f"buddy under {server} to answer /healthz",
    )
    return process, url


@contextlib.contextmanager
def buddy_server(
    server: Literal["uvicorn", "gunicorn"] = "uvicorn", *, workers: int = 2, **extra_env: str
) -> Iterator[str]:
    """buddy served as deployed (uvicorn on buddy.asgi, or gunicorn's sync workers on buddy.wsgi)
    in a subprocess, on the test database and Redis; yields its base URL once /healthz answers."""
    env = subprocess_env(**extra_env)
    fd, log_name = tempfile.mkstemp(prefix=f"buddy-{server}-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    process: Process | None = None
    try:
        # A port free when asked may be taken before the server binds it: then try another.
        for _attempt in range(3):
            process, url = _start_server(server, workers, env, log_path)
            if process.alive():
                break
        else:
            assert process is not None
            raise AssertionError(f"buddy under {server} did not start:\n{process.log_tail()}")
        yield url
    finally:
        if process is not None:
            process.stop()
        log_path.unlink(missing_ok=True)


# --- Celery ---------------------------------------------------------------------------------------


class CeleryProcess(Process):
    """`celery -A buddy <args>`."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__([sys.executable, "-m", "celery", "-A", "buddy", *args], env, log_path)


class Worker(CeleryProcess):
    """`celery -A buddy worker` with the prefork pool, consuming the test queue."""

    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int = 2) -> None:
        self.nodename = f"buddy-test-{uuid.uuid4().hex[:8]}@%h"
        super().__init__(
            [
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "-Q", settings.CELERY_TASK_DEFAULT_QUEUE,
                "-n", self.nodename,
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
            log_path,
        )  # fmt: skip
        self.broker_url = env["REDIS_URL"]
        self._probe: Celery | None = None

    def start_and_wait(self, timeout: float = 90) -> None:
        self.start()
        wait_until(self.answers_ping, timeout=timeout, interval=0.3, what="the worker's ping")

    def answers_ping(self) -> bool:
        """The worker answers a remote-control ping through its broker (it is consuming)."""
        if not self.alive():
            raise AssertionError(f"the celery worker exited:\n{self.log_tail()}")
        if self._probe is None:
            # An app of its own, so that pinging never touches this process's publisher.
            self._probe = Celery("probe", broker=self.broker_url, set_as_current=False)
            self._probe.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        hostname = self.nodename.replace("%h", os.uname().nodename)
        try:
            return bool(self._probe.control.ping(destination=[hostname], timeout=0.5))
        except Exception:
            return False


def worker_env(*, redis_url: str, orchestrator_url: str, **extra: str) -> dict[str, str]:
    """`subprocess_env` for a Celery worker or beat on `redis_url`, provisioning through the
    fake orchestrator at `orchestrator_url`."""
    return subprocess_env(
        REDIS_URL=redis_url,
        BUDDY_CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        BUDDY_PROVISIONER="http",
        BUDDY_PROVISIONER_URL=orchestrator_url,
        BUDDY_PROVISIONER_TIMEOUT="2",
        BUDDY_PROVISIONER_MAX_RETRIES=str(WORKER_PROVISIONER_MAX_RETRIES),
        BUDDY_LOCAL_ENDPOINT_URL=WORKER_LOCAL_ENDPOINT_URL,
        BUDDY_TASK_VISIBILITY_TIMEOUT=str(WORKER_VISIBILITY_TIMEOUT),
        BUDDY_REVOKE_BATCH_SIZE=str(WORKER_REVOKE_BATCH_SIZE),
        LOG_LEVEL="INFO",
        **extra,
    )


class Beat(CeleryProcess):
    """`celery -A buddy beat`, its schedule file and log in `tmp_path`."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        super().__init__(
            ["beat", "-s", str(tmp_path / "celerybeat-schedule"), "--loglevel=INFO"],
            env,
            tmp_path / "beat.log",
        )

    def start_and_wait(self, timeout: float = 60) -> None:
        self.start()
        self.wait_until_up(
            lambda: "beat: Starting..." in self.log_tail(200), timeout=timeout, what="beat to start"
        )
