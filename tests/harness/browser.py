"""Debian's headless Chromium driven by Selenium, for the suite's browser tests (the admin's and
the console's): one set of flags, ports from the test range, a page-load timeout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.harness.ports import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def chromium(
    *,
    width: int = 1280,
    height: int = 1024,
    page_load_seconds: float = 20,
    hide_scrollbars: bool = False,
) -> Iterator[webdriver.Chrome]:
    """A headless Chromium (`make test` installs it: `scripts/ensure-browser.sh`), quit at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        *(["--hide-scrollbars"] if hide_scrollbars else []),
        f"--window-size={width},{height}",
        f"--remote-debugging-port={free_port()}",
    ]:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, port=free_port())
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(page_load_seconds)
    try:
        yield driver
    finally:
        driver.quit()
