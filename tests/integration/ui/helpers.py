"""Reading the web app's page in the browser: element text by id, waiting for a condition."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from webapp.app import LiveApp, UiOptions
from webapp.page import gradio
from worker.settings import Settings, load_settings

# Import gradio now, before a test starts worker threads: its import parses source with `ast`, which CPython 3.11
# fails when another thread parses at the same time (webapp.app.start_ui does the same for `ui`).
gradio()


def text_of(driver: Any, element_id: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("id", element_id).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def count(driver: Any) -> int:
    text = text_of(driver, "sw-count")
    return int(text.replace(",", "")) if text and text.replace(",", "").isdigit() else -1


def plot_drawn(driver: Any, element_id: str = "sw-mix") -> bool:
    """The plot shows lines and axes on screen (a screenshot of it has many dark pixels below its title)."""
    from PIL import Image

    image = Image.open(io.BytesIO(driver.find_element("id", element_id).screenshot_as_png)).convert("L")
    width, height = image.size
    return sum(1 for p in image.crop((0, 40, width, height)).getdata() if p < 160) > 500


def wait_page(driver: Any, what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except StaleElementReferenceException:  # the page re-rendered what check() had found: look again
            result = None
        if result:
            return result
        time.sleep(0.25)
    status = text_of(driver, "sw-status")
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; page status: {status!r}")


def start_app(settings: Settings, **options: Any) -> LiveApp:
    app = LiveApp(settings, UiOptions(host="127.0.0.1", port=0, **options))
    app.launch()
    return app


def ui_settings(bootstrap: str, **overrides: Any) -> Settings:
    return load_settings(bootstrap_servers=bootstrap, device="cpu", **overrides)
