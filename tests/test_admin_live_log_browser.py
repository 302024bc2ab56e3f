"""A real Chromium follows a live run's log on its admin page, without reloading it."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts_app.login_links import login_link_token
from accounts_app.models import Role
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_admin import append_log, make_pipeline, make_run, make_user
from tests.helpers_browser import wait_until


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
    wait_until(browser, lambda d: "second line" in log.text, "the new line never appeared")

    assert "[00:00:02] second line <b>not bold</b>" in log.text
    assert browser.find_elements(By.CSS_SELECTOR, "#ff-log b") == []
    assert browser.execute_script("return window.ffSamePage") is True

    append_log(run, "[00:00:03] last line\n")
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCESS, finished_at=timezone.now(), exit_code=0
    )
    wait_until(
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
