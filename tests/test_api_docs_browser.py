"""A real Chromium, with every other host unresolvable, renders the API docs page.

Swagger UI (/api/docs/) comes from drf-spectacular-sidecar's static files and reads /api/schema/
from this server: nothing is fetched from a CDN.
"""

from __future__ import annotations

import pytest

from tests.helpers_browser import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RESOURCES = "return performance.getEntriesByType('resource').map(e => e.name)"


def _page_text(driver: object) -> str:
    return driver.execute_script("return document.body.innerText")


def _only_local(driver: object, origin: str) -> None:
    fetched = driver.execute_script(RESOURCES)
    assert f"{origin}/api/schema/" in fetched
    assert [url for url in fetched if not url.startswith(origin)] == []


def test_swagger_ui_shows_every_operation_offline(browser, live_server):
    browser.get(f"{live_server.url}/api/docs/")
    wait_until(
        browser,
        lambda d: "pipelines_runs_create" in _page_text(d),
        "Swagger UI never rendered the operations (a script failed to load?)",
    )
    text = _page_text(browser)
    assert "/api/runs/{run_id}/logs/stream/" in text
    assert "Fast-Flow API" in text
    _only_local(browser, live_server.url)
