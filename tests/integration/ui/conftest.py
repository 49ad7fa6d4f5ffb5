"""Browser fixtures for the web app's tests: Debian's chromium driven by Selenium through chromium-driver.

Without chromium or chromedriver the browser tests skip, except under CI (env ``CI`` set), where any skip fails
(tests/support/ci_skips.py): CI installs both (``.ci/run``), so a skip there would hide a broken set-up.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.broker import EmbeddedBroker

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1400, 1000)


def _find(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser_paths() -> tuple[str, str]:
    chromium, driver = _find(CHROMIUM), _find(("chromedriver",))
    if chromium is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None)
        pytest.skip(f"{missing} not found (apt-get install chromium chromium-driver)")
    return chromium, driver


@pytest.fixture(scope="module")
def browser(browser_paths: tuple[str, str]) -> Iterator[Any]:
    """A headless chromium (one per test module), window 1400x1000."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(browser_paths[1]), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def ui_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, which the test may stop and start again (same port, empty)."""
    with EmbeddedBroker() as embedded:
        yield embedded
