"""The console's browser harness: Debian's headless Chromium driven by Selenium (as the admin's
browser test does), buddy served under uvicorn in a subprocess as `make run` serves it (the
embedded default: tasks in-process, the `local` provisioner, the built-in model server, the
scheduler thread) but on the test database, and screenshots at desktop and phone width."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
from selenium import webdriver

from tests.harness.browser import chromium as harness_chromium
from tests.harness.ports import free_port
from tests.harness.processes import ROOT, Process, _server_argv, subprocess_env
from tests.harness.wait import wait_until

WAIT_SECONDS = 30
DESKTOP = 1280
PHONE = 390
# Where the journey writes its screenshots (git-ignored; the README names it).
SCREENSHOTS = Path(os.environ.get("BUDDY_CONSOLE_SCREENSHOTS", ROOT / "screenshots" / "console"))
# Whole secrets: an `ob_sk_` key (prefix and 48 base62 characters) or a webhook signing secret.
SECRET_RE = re.compile(r"ob_sk_[0-9A-Za-z]{48}|whsec_[0-9A-Za-z+/=]{16,}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def embedded_buddy(**extra_env: str) -> Iterator[str]:
    """buddy as `make run` serves it (uvicorn, one process, no Redis server: tasks run in-process
    and the schedule in a thread), on the test database, with collected static files."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="buddy-console-") as tmp:
        env = subprocess_env(
            REDIS_URL="",
            PORT=str(port),
            BUDDY_PROVISIONER="local",
            BUDDY_LOCAL_MODEL_ENABLED="true",
            BUDDY_LOCAL_ENDPOINT_URL=f"{url}/local-model",
            BUDDY_LOCAL_BOOT_SECONDS="1",
            BUDDY_USAGE_LOCAL_FLUSH_SECONDS="1",
            BUDDY_USAGE_FLUSH_SECONDS="1",
            BUDDY_LOOKUP_LAST_USED_LOCAL_FLUSH_SECONDS="1",
            BUDDY_LOOKUP_LAST_USED_FLUSH_SECONDS="1",
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="false",
            STATIC_ROOT=str(Path(tmp) / "static"),
            **extra_env,
        )
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        process = Process(_server_argv("uvicorn", port, 1), env, Path(tmp) / "server.log")
        process.start()
        try:
            process.wait_until_up(lambda: _answers(url), timeout=90, what="buddy under uvicorn")
            yield url
        finally:
            process.stop()


@contextlib.contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    with harness_chromium(
        width=DESKTOP, height=900, page_load_seconds=WAIT_SECONDS, hide_scrollbars=True
    ) as driver:
        yield driver


def screenshot(browser: webdriver.Chrome, name: str) -> None:
    """The whole page as it is, at desktop then phone width (`SCREENSHOTS/<name>-desktop.png`,
    `-phone.png`): Chromium's device emulation (mobile at phone width, so the page's viewport
    meta applies), as tall as the page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, width in (("desktop", DESKTOP), ("phone", PHONE)):
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width == PHONE}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        metrics["height"] = max(900, min(int(height), 6000))
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        browser.save_screenshot(str(SCREENSHOTS / f"{name}-{label}.png"))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def wait_for(condition, *, what: str, timeout: float = WAIT_SECONDS):  # type: ignore[no-untyped-def]
    return wait_until(condition, timeout=timeout, interval=0.2, what=what)
