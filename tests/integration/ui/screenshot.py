"""Take docs/ui.png: `sentiment-worker ui --demo` in a subprocess, headless chromium at 1400x1000, once live records
have come in and the try-it box has answered.

    python -m tests.integration.ui.screenshot docs/ui.png [--model DIR]

(Without --model the demo uses the offline starter model, building it first if it is not cached.)
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from devtools.ports import free_port
from tests.integration.ui.helpers import count, plot_drawn, wait_page

# No update in flight (Gradio marks its outputs pending).
SETTLED = "return !document.querySelector('[class*=pending], [class*=translucent]')"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output", type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--records", type=int, default=300, help="Wait for this many live records first.")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    port = free_port()
    cmd = [sys.executable, "-m", "worker", "ui", "--demo", "--port", str(port)]
    cmd += ["--model", args.model] if args.model else []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="")
            if re.search(r"web app at http://", line):
                break
        threading.Thread(target=lambda: [print(line, end="") for line in proc.stdout or ()], daemon=True).start()
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or ""), options=options)
        driver.get(f"http://127.0.0.1:{port}/")
        wait_page(driver, f"{args.records} records", lambda: count(driver) >= args.records, timeout=120)
        box = driver.find_element("css selector", "#sw-try-text textarea")
        box.send_keys("The battery died after two days and support never answered.")
        driver.find_element("id", "sw-try-button").click()
        wait_page(driver, "the try-it answer", lambda: driver.find_element("id", "sw-try-result").get_attribute(
            "data-label"))  # fmt: skip
        time.sleep(1.0)
        wait_page(driver, "the plot drawn", lambda: plot_drawn(driver))
        wait_page(driver, "the page settled", lambda: driver.execute_script(SETTLED))
        driver.save_screenshot(str(args.output))
        print(f"wrote {args.output}")
        return 0
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


if __name__ == "__main__":
    sys.exit(main())
