"""A real Chromium follows a live run's log on its admin page, without reloading it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts_app.login_links import login_link_token
from accounts_app.models import Role
from runs_app.models import PipelineRun, RunStatus
from tests.conftest import IN_CI
from tests.helpers_admin import append_log, make_pipeline, make_run, make_user

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
WAIT_SECONDS = 15


def _browser_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        paths = None
    else:
        paths = _browser_paths()
    if paths is None:
        reason = "needs selenium, chromium and chromium-driver (apt-get install chromium-driver)"
        if IN_CI:
            pytest.fail(f"CI=true but the browser test cannot run: it {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: object, condition, message: str) -> None:  # noqa: ANN001 - selenium callable
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(condition, message)


@pytest.mark.django_db(transaction=True)
def test_the_run_page_appends_new_log_lines_and_stops_when_the_run_ends(
    browser, live_server
) -> None:
    from selenium.webdriver.common.by import By

    user = make_user(Role.READONLY)
    run = make_run(
        make_pipeline("live"),
        RunStatus.RUNNING,
        log="[00:00:01] first line\n",
        started_at=timezone.now(),
    )
    login = reverse("login_link", kwargs={"token": login_link_token(user=user)})
    browser.get(f"{live_server.url}{login}")
    browser.get(f"{live_server.url}{reverse('admin:runs_app_pipelinerun_change', args=[run.pk])}")
    log = browser.find_element(By.ID, "ff-log")
    assert "[00:00:01] first line" in log.text
    assert log.get_attribute("data-live") == "true"
    # Survives only if the page is never reloaded.
    browser.execute_script(
        "window.ffSamePage = true; window.ffFetches = 0;"
        "const original = window.fetch;"
        "window.fetch = function () {"
        "  window.ffFetches += 1;"
        "  return original.apply(this, arguments);"
        "};"
    )

    append_log(run, "[00:00:02] second line <b>not bold</b>\n")
    _wait(browser, lambda d: "second line" in log.text, "the new line never appeared")

    assert "[00:00:02] second line <b>not bold</b>" in log.text
    assert browser.find_elements(By.CSS_SELECTOR, "#ff-log b") == []
    assert browser.execute_script("return window.ffSamePage") is True

    append_log(run, "[00:00:03] last line\n")
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCESS, finished_at=timezone.now(), exit_code=0
    )
    _wait(
        browser,
        lambda d: log.get_attribute("data-live") == "false",
        "polling did not stop after the run finished",
    )

    assert "[00:00:03] last line" in log.text
    state = browser.find_element(By.ID, "ff-log-state")
    assert state.get_attribute("data-state") == "done" and "SUCCESS" in state.text
    badge = browser.find_element(By.CSS_SELECTOR, "[data-ff-run-status]")
    assert badge.get_attribute("data-status") == "SUCCESS"
    fetches = browser.execute_script("return window.ffFetches")
    append_log(run, "[00:00:04] written after the end\n")
    # Three poll intervals: a page still polling would have fetched again by now.
    browser.execute_script("return new Promise(resolve => setTimeout(resolve, 3000))")
    assert browser.execute_script("return window.ffFetches") == fetches
    assert "written after the end" not in log.text
    assert browser.execute_script("return window.ffSamePage") is True
