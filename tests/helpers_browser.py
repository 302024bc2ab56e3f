"""The browser tests' Chromium flags and waiting (the `browser` fixture is in conftest.py).

Every host but this machine's is unresolvable: a page that reached for a CDN would show it.
"""

from __future__ import annotations

from collections.abc import Callable

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Offline, as many self-hosted installations are: only the live server answers.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)
WAIT_SECONDS = 15


def wait_until(driver: object, condition: Callable[[object], object], message: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(condition, message)
