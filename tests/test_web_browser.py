"""A real browser on the owner's page: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) against `evse-gateway demo` as a real process.

It sees the live values change without a reload, logs in, clicks a mode button and the
charger's limit changes. The screenshot it takes is the README's (`SCREENSHOT=path`).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.conftest import ROOT
from tests.waiting import until

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """`tests.waiting.until` for this synchronous browser session; returns the true value.

    The page redraws its rows every cycle, so an element found a moment ago may be gone:
    that counts as "not yet" and the condition is tried again.
    """
    found: list[Any] = []

    def attempt() -> Any:
        try:
            found.append(condition())
        except StaleElementReferenceException:
            found.append(None)
        return found[-1]

    asyncio.run(until(attempt, timeout, what))
    return found[-1]


@contextmanager
def demo() -> Iterator[str]:
    """`evse-gateway demo --free-ports`; yields the page URL it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--free-ports", "--speed", "60", "--every", "50"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True)
    reader.start()

    def url() -> str | None:
        while not lines.empty():
            line = lines.get()
            if line.startswith("owner's page: "):
                return line.split(": ", 1)[1].strip()
        assert process.poll() is None, "the demo ended"
        return None

    try:
        yield wait(url, 30, "the demo to print the page's URL")
    finally:
        process.terminate()
        process.wait(10)


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + "api/v1/" + path, timeout=5) as r:
        return json.load(r)


@contextmanager
def chromium(user_data: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={user_data}",
        "--window-size=430,1500",  # a phone's width
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_updates_live_and_a_mode_button_changes_the_chargers_limit(tmp_path):
    with demo() as base, chromium(tmp_path / "profile") as browser:
        browser.get(base)
        text = lambda css: browser.find_element(By.CSS_SELECTOR, css).text  # noqa: E731
        first = wait(lambda: "cycle" in text("#updated") and text("#updated"), 20, "a cycle")
        wait(lambda: text("#updated") != first, 10, "the page to update without a reload")
        assert "Read-only" in text("#access")
        wait(
            lambda: (
                (b := browser.find_elements(By.CSS_SELECTOR, ".modes button"))
                and not any(x.is_enabled() for x in b)
            ),
            5,
            "mode buttons shown, all disabled while read-only",
        )
        charging = wait(
            lambda: next((c for c in api(base, "chargers") if c["allocated_a"] > 0), None),
            30,
            "a charger with a limit above 0 A",
        )
        cid = charging["id"]
        browser.find_element(By.ID, "password").send_keys("demo")
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait(lambda: "Logged in" in text("#access"), 10, "the login")
        button = f'#charger-{cid} button[data-mode="off"]'
        wait(lambda: browser.find_element(By.CSS_SELECTOR, button).is_enabled(), 5, "buttons on")

        def click() -> bool:
            browser.find_element(By.CSS_SELECTOR, button).click()
            return True

        wait(click, 5, f"a click on {button}")
        wait(
            lambda: next(c for c in api(base, "chargers") if c["id"] == cid)["allocated_a"] == 0,
            10,
            f"{cid}'s limit to drop to 0 A",
        )
        wait(lambda: text(f"#charger-{cid} .limit") == "limit 0.0 A", 10, "the page to show it")
        wait(
            lambda: (
                "active"
                in (browser.find_element(By.CSS_SELECTOR, button).get_attribute("class") or "")
            ),
            5,
            "the off button marked active",
        )
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("SCREENSHOT"):
            shutil.copy(shot, os.environ["SCREENSHOT"])
