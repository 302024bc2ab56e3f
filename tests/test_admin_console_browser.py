"""The console in a real Chromium: the dashboard, the run list and the timeline, a live run page
through SUCCESS and through Cancel with a real engine (every field updates without a reload),
the pipeline page and Run now with pre-filled parameters; in light and dark mode, at 1366 px
and at 390 px."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts_app.login_links import login_link_token
from accounts_app.models import Role
from runs_app.models import EngineInstance, PipelineRun, RunStatus
from runs_app.outcome import Outcome
from runs_app.schedule_services import schedules_sync_from_pipelines
from runs_app.services import run_enqueue, run_finish
from tests.helpers_admin import make_user
from tests.helpers_browser import wait_until
from tests.helpers_engine import ThreadEngine, make_pipeline, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DESKTOP, MOBILE = (1366, 900), (390, 844)
# A run through the real engine: its setup and the page's polling, on a busy 2-core machine.
RUN_WAIT = 90

# A run that takes ~12 s: output on both streams, an error-looking line on stderr, memory that
# grows (so CPU/RAM samples, taken every 2 s after the first second, show up while it runs).
STEPS = 12
WORKER = f"""
import sys, time
held = []
for step in range(1, {STEPS + 1}):
    held.append(bytearray(b"x") * (8 * 1024 * 1024))
    print(f"step {{step}} of {STEPS}", flush=True)
    if step == 4:
        print("ValueError: a recoverable problem", file=sys.stderr, flush=True)
    time.sleep(1)
print("all done", flush=True)
"""
SLEEPER = "import time\nprint('waiting', flush=True)\ntime.sleep(120)\n"

# Surfaces whose background must be dark in dark mode (and light in light mode).
SURFACES = ".ff-panel, .ff-card, #content fieldset.module, #changelist-filter, .ff-segmented"
LUMINANCE_JS = """
function lum(colour) {
  const m = colour.match(/rgba?\\(([^)]+)\\)/);
  if (!m) return null;
  const [r, g, b, a] = m[1].split(',').map(Number);
  if (a === 0) return null;
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
}
"""


def login(driver, live_server, role: str = Role.WRITE) -> None:  # noqa: ANN001
    user = make_user(role)
    driver.get(
        live_server.url + reverse("login_link", kwargs={"token": login_link_token(user=user)})
    )


def show(driver, live_server, path: str, *, theme: str = "light", size=DESKTOP) -> None:  # noqa: ANN001
    """Open `path` at `size` in `theme` (the admin's own theme switch keeps it in
    localStorage, read when a page loads)."""
    driver.set_window_size(*size)
    driver.get(live_server.url + path)
    driver.execute_script(f"localStorage.setItem('theme', '{theme}')")
    driver.get(live_server.url + path)
    assert driver.execute_script("return document.documentElement.dataset.theme") == theme


def mark_page(driver) -> None:  # noqa: ANN001
    """A flag that survives only as long as the page is not reloaded."""
    driver.execute_script("window.ffSamePage = true;")


def still_same_page(driver) -> bool:  # noqa: ANN001
    return driver.execute_script("return window.ffSamePage === true") is True


def text_of(driver, element_id: str) -> str | None:  # noqa: ANN001
    """The text of an element of a live panel, read in one step: the page swaps the panels
    while the run goes on, so an element found first may be gone by the next call."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : null;",
        element_id,
    )


def shown(driver, element_id: str) -> bool:  # noqa: ANN001
    """Whether an element of a live panel is on the page and visible (read in one step)."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]);"
        "return e !== null && e.getClientRects().length > 0;",
        element_id,
    )


def status_of(driver) -> str | None:  # noqa: ANN001
    return driver.execute_script(
        "const e = document.getElementById('ff-run-status'); return e ? e.dataset.status : null;"
    )


def click_live(driver, element_id: str) -> None:  # noqa: ANN001
    """Click a button of a live panel, which the page may swap for a fresh copy at any time."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d) -> bool:  # noqa: ANN001
        try:
            d.find_element(By.ID, element_id).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_until(driver, clicked, f"#{element_id} could not be clicked")


def assert_no_horizontal_scroll(driver) -> None:  # noqa: ANN001
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


def assert_no_page_errors(driver) -> None:  # noqa: ANN001
    """Nothing failed on the pages shown since the last call: no script error, no resource
    that did not load (a 404, or a CDN: every other host is unresolvable)."""
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def assert_theme(driver, theme: str) -> None:  # noqa: ANN001
    """Every surface of the console is dark in dark mode (light in light mode), and its text
    contrasts with it."""
    result = driver.execute_script(
        LUMINANCE_JS
        + f"""
        const out = [];
        document.querySelectorAll({SURFACES!r}).forEach(function (el) {{
          const bg = lum(getComputedStyle(el).backgroundColor);
          const fg = lum(getComputedStyle(el).color);
          if (bg !== null) out.push([el.className || el.id, bg, fg]);
        }});
        return out;
        """
    )
    assert result, "no console surface on the page"
    for name, background, text in result:
        if theme == "dark":
            assert background < 0.2 and text > 0.6, f"{name} is not dark: {background}, {text}"
        else:
            assert background > 0.85 and text < 0.4, f"{name} is not light: {background}, {text}"


def finished(pipeline, *, seconds: float, exit_code: int = 0) -> PipelineRun:  # noqa: ANN001
    """A run that ends now through the service (so the period statistics count it)."""
    started = timezone.now() - timedelta(seconds=seconds)
    run = PipelineRun.objects.create(
        pipeline=pipeline, status=RunStatus.RUNNING, queued_at=started, started_at=started
    )
    return run_finish(run=run, outcome=Outcome(exit_code=exit_code))


def seed_dashboard() -> dict[str, PipelineRun]:
    etl = make_pipeline("etl", pipeline_json={"schedule_cron": "*/5 * * * *"})
    other = make_pipeline("other")
    schedules_sync_from_pipelines()
    now = timezone.now()
    running = PipelineRun.objects.create(
        pipeline=etl, status=RunStatus.RUNNING, queued_at=now, started_at=now
    )
    PipelineRun.objects.create(
        pipeline=etl, status=RunStatus.PENDING, queued_at=now - timedelta(minutes=4)
    )
    # A second long: the dashboard's bar lists the runs queued in its hour (statistics count
    # runs by the hour they ended), so this one is in the hour it ended in.
    failed = finished(etl, seconds=1, exit_code=1)
    for seconds in (20, 60, 80):
        finished(etl, seconds=seconds)
    finished(other, seconds=100)
    EngineInstance.objects.create(id="e1", hostname="host-1", pid=42, executor="local")
    return {"running": running, "failed": failed}


def run_statuses(driver) -> list[str]:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    badges = driver.find_elements(By.CSS_SELECTOR, "#result_list [data-ff-run-status]")
    return [badge.get_attribute("data-status") for badge in badges]


@pytest.mark.parametrize(
    ("theme", "size"), [("light", DESKTOP), ("dark", DESKTOP), ("dark", MOBILE)]
)
def test_the_dashboard_links_every_number_to_its_list(browser, live_server, theme, size) -> None:
    from selenium.webdriver.common.by import By

    seed_dashboard()
    login(browser, live_server)
    show(browser, live_server, reverse("admin:index"), theme=theme, size=size)

    running = browser.find_element(By.ID, "ff-kpi-running")
    assert running.find_element(By.CLASS_NAME, "ff-card-value").text == "1"
    queue = browser.find_element(By.ID, "ff-kpi-queue")
    assert "oldest waiting 4 min" in queue.text
    runs = browser.find_element(By.ID, "ff-kpi-runs")
    assert runs.find_element(By.CLASS_NAME, "ff-card-value").text == "5"
    success = browser.find_element(By.ID, "ff-kpi-success")
    assert success.find_element(By.CLASS_NAME, "ff-card-value").text == "80.0 %"
    assert "p95" in browser.find_element(By.ID, "ff-kpi-duration").text
    assert "host-1" in browser.find_element(By.ID, "ff-engines").text
    assert "*/5 * * * *" in browser.find_element(By.ID, "ff-next-fires").text
    assert "etl" in browser.find_element(By.ID, "ff-failing").text
    bars = browser.find_elements(By.CSS_SELECTOR, "#ff-runs-chart a rect.ff-chart-bar")
    assert {bar.get_attribute("class").split()[-1] for bar in bars} == {
        "ff-s-SUCCESS",
        "ff-s-FAILED",
    }
    chart = browser.find_element(By.CSS_SELECTOR, "#ff-runs-chart svg").size
    assert chart["width"] > 0 and chart["height"] > 0
    assert_no_horizontal_scroll(browser)
    assert_theme(browser, theme)

    queue.click()
    wait_until(browser, lambda d: "status__exact=PENDING" in d.current_url, "the queue led nowhere")
    assert run_statuses(browser) == ["PENDING"]

    browser.back()
    browser.find_element(By.ID, "ff-kpi-success").click()
    wait_until(browser, lambda d: "status__exact=FAILED" in d.current_url, "success rate: nowhere")
    assert run_statuses(browser) == ["FAILED"]

    # A bar of the chart: the runs of its hour with its status.
    browser.back()
    browser.find_element(By.CSS_SELECTOR, "#ff-runs-chart a rect.ff-s-FAILED").click()
    wait_until(browser, lambda d: "queued_at__gte" in d.current_url, "the bar led nowhere")
    assert run_statuses(browser) == ["FAILED"]
    assert_no_page_errors(browser)


@pytest.mark.parametrize(
    ("theme", "size"), [("light", DESKTOP), ("dark", DESKTOP), ("light", MOBILE)]
)
def test_the_run_list_reads_at_a_glance(browser, live_server, theme, size) -> None:
    from selenium.webdriver.common.by import By

    seeded = seed_dashboard()
    make_pipeline("a_pipeline_with_a_rather_long_name_for_a_list")
    # With git sync the list has the commit a run ran: it still fits.
    commit = "0123456789abcdef0123456789abcdef01234567"
    PipelineRun.objects.filter(pk=seeded["failed"].pk).update(git_commit=commit)
    login(browser, live_server)
    show(
        browser,
        live_server,
        reverse("admin:runs_app_pipelinerun_changelist"),
        theme=theme,
        size=size,
    )

    assert_no_horizontal_scroll(browser)
    if size == DESKTOP:  # at 1366 px the table itself fits, next to the filters
        table = browser.execute_script(
            "const t = document.getElementById('result_list');"
            "return [t.scrollWidth, t.parentElement.clientWidth]"
        )
        assert table[0] <= table[1], f"the run table is wider than its column: {table}"
        assert browser.find_element(By.ID, "changelist-filter").is_displayed()
    times = browser.find_elements(By.CSS_SELECTOR, "#result_list time[data-ff-relative]")
    assert len(times) == 7
    assert all(t.get_attribute("title").endswith(" UTC") for t in times)
    assert all(len(t.get_attribute("title")) == len("2030-01-01 00:00:00 UTC") for t in times)
    bars = browser.find_elements(By.CSS_SELECTOR, "#result_list .ff-duration")
    assert len(bars) == 6  # every run that started; the pending one shows "—"
    assert all("started" in bar.get_attribute("title") for bar in bars)
    shares = [
        bar.find_element(By.CSS_SELECTOR, ".ff-duration-bar > span").get_attribute("style")
        for bar in bars
    ]
    assert "width: 100%;" in shares and len(set(shares)) > 2  # scaled to the longest run
    if size == DESKTOP:
        assert all(
            bar.find_element(By.CLASS_NAME, "ff-duration-bar").is_displayed() for bar in bars
        )
    assert sorted(set(run_statuses(browser))) == ["FAILED", "PENDING", "RUNNING", "SUCCESS"]
    assert (
        browser.find_element(By.CSS_SELECTOR, f'#result_list code[title="{commit}"]').text
        == (commit[:12])
    )
    assert_theme(browser, theme)
    assert_no_page_errors(browser)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_timeline_draws_a_lane_per_pipeline_with_bars_linked_to_their_runs(
    browser, live_server, theme
) -> None:
    from selenium.webdriver.common.by import By

    seed_dashboard()
    login(browser, live_server, Role.READONLY)
    show(browser, live_server, reverse("admin:runs_app_pipelinerun_changelist"), theme=theme)
    browser.find_element(By.CSS_SELECTOR, "a.ff-timeline-link").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "ff-timeline"), "no timeline")

    lanes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#ff-timeline .ff-chart-lane'))"
        ".map(function (t) { const n = t.firstChild;"
        " return n && n.nodeType === Node.TEXT_NODE ? n.nodeValue : ''; })"
    )
    # etl's six runs overlap: four lanes (the most), the first one labelled; then other's.
    assert lanes == ["etl", "", "", "", "other"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#ff-timeline a rect.ff-chart-bar")
    assert len(bars) == 7  # the pending run too: a sliver at "now", after its wait
    classes = sorted(bar.get_attribute("class").split()[-1] for bar in bars)
    assert classes == sorted(["ff-s-PENDING", "ff-s-RUNNING", "ff-s-FAILED", *["ff-s-SUCCESS"] * 4])
    width = browser.find_element(By.CSS_SELECTOR, "#ff-timeline svg").size["width"]
    assert width > 1000  # the page's width at 1366 px, not a fixed drawing
    assert_no_horizontal_scroll(browser)
    assert_theme(browser, theme)

    # A lane's name shows that pipeline's runs alone; over the last hour, a bar leads to its run.
    browser.find_element(
        By.XPATH, "//*[local-name()='text' and @class='ff-chart-lane' and starts-with(., 'other')]"
    ).click()
    wait_until(browser, lambda d: "pipeline=other" in d.current_url, "the lane led nowhere")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#ff-timeline a rect.ff-chart-bar")) == 1
    browser.find_element(By.CSS_SELECTOR, '.ff-segmented a[href*="window=1h"]').click()
    wait_until(browser, lambda d: "window=1h" in d.current_url, "no 1 h window")
    browser.find_element(By.CSS_SELECTOR, "#ff-timeline a rect.ff-chart-bar").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "ff-run-live"), "the bar led nowhere")
    assert "other" in browser.find_element(By.CSS_SELECTOR, ".ff-page-head").text
    assert status_of(browser) == "SUCCESS"
    assert_no_page_errors(browser)


def test_a_live_run_page_follows_the_run_to_success_without_a_reload(browser, live_server) -> None:
    from selenium.webdriver.common.by import By

    pipeline = make_pipeline("worker", WORKER, pipeline_json={"mem_hard_limit": "512m"})
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    login(browser, live_server)
    show(browser, live_server, reverse("admin:runs_app_pipelinerun_change", args=[run.pk]))
    mark_page(browser)
    assert status_of(browser) == "PENDING"
    assert text_of(browser, "ff-fact-exit-code") == "—"
    assert shown(browser, "ff-cancel-run")

    with ThreadEngine():
        wait_until(browser, lambda d: status_of(d) == "RUNNING", "never RUNNING", timeout=RUN_WAIT)
        assert "RUNNING" in browser.title
        assert text_of(browser, "ff-fact-finished") == "—"
        assert "so far" in text_of(browser, "ff-fact-duration")
        wait_until(
            browser,
            lambda d: f"step 3 of {STEPS}" in d.find_element(By.ID, "ff-log").text,
            "the log did not follow the run",
            timeout=RUN_WAIT,
        )
        wait_until(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#ff-run-resources polyline"),
            "the CPU/RAM charts never got samples while running",
            timeout=RUN_WAIT,
        )
        assert not PipelineRun.objects.get(pk=run.pk).is_terminal  # drawn while it ran
        wait_for(lambda: PipelineRun.objects.get(pk=run.pk).is_terminal, timeout=RUN_WAIT)
        wait_until(browser, lambda d: status_of(d) == "SUCCESS", "never SUCCESS")
    wait_until(
        browser,
        lambda d: d.find_element(By.ID, "ff-log").get_attribute("data-live") == "false",
        "the log never stopped",
    )

    assert still_same_page(browser)
    assert "SUCCESS" in browser.title
    heading = browser.execute_script(
        "return document.querySelector('#ff-run-live .ff-page-head').innerText"
    )
    assert "SUCCESS" in heading and "RUNNING" not in heading
    assert text_of(browser, "ff-fact-status") == "SUCCESS"
    assert text_of(browser, "ff-fact-exit-code") == "0"
    assert text_of(browser, "ff-fact-finished") != "—"
    assert "so far" not in text_of(browser, "ff-fact-duration")
    assert not shown(browser, "ff-cancel-run")
    assert shown(browser, "ff-retry-run")
    assert shown(browser, "ff-download-log")
    assert shown(browser, "ff-download-metrics")
    resources = text_of(browser, "ff-run-resources")
    assert "limit 512 MiB" in resources and "100 %" in resources
    assert "memory 512 MiB" in text_of(browser, "ff-run-limits")
    log = browser.find_element(By.ID, "ff-log")
    assert "all done" in log.text
    stderr = browser.find_elements(By.CSS_SELECTOR, "#ff-log .ff-log-stderr")
    assert [line.text.split(" ", 1)[1] for line in stderr] == ["ValueError: a recoverable problem"]
    assert browser.find_elements(By.CSS_SELECTOR, "#ff-log .ff-log-note .ff-log-badge")

    # Find in the log: every match marked, Enter steps through them.
    find = browser.find_element(By.ID, "ff-log-find")
    find.send_keys("step")
    wait_until(
        browser, lambda d: d.find_element(By.ID, "ff-log-find-count").text == f"1 / {STEPS}", "find"
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#ff-log mark.ff-find")) == STEPS
    find.send_keys("\n")
    assert browser.find_element(By.ID, "ff-log-find-count").text == f"2 / {STEPS}"
    # The first error: the stderr line that reports one.
    browser.find_element(By.ID, "ff-log-first-error").click()
    flashed = browser.find_element(By.CSS_SELECTOR, "#ff-log .ff-log-flash")
    assert "ValueError: a recoverable problem" in flashed.text
    assert still_same_page(browser)
    assert_no_page_errors(browser)


def test_a_live_run_page_follows_a_cancel_without_a_reload_dark_on_a_phone(
    browser, live_server
) -> None:
    from selenium.webdriver.common.by import By

    pipeline = make_pipeline("sleeper", SLEEPER)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    login(browser, live_server)
    with ThreadEngine():
        wait_for(
            lambda: PipelineRun.objects.get(pk=run.pk).status == RunStatus.RUNNING,
            timeout=RUN_WAIT,
        )
        show(
            browser,
            live_server,
            reverse("admin:runs_app_pipelinerun_change", args=[run.pk]),
            theme="dark",
            size=MOBILE,
        )
        mark_page(browser)
        wait_until(
            browser,
            lambda d: "waiting" in d.find_element(By.ID, "ff-log").text,
            "no log",
            timeout=RUN_WAIT,
        )
        assert status_of(browser) == "RUNNING"
        assert_no_horizontal_scroll(browser)
        assert_theme(browser, "dark")

        click_live(browser, "ff-cancel-run")
        wait_until(
            browser, lambda d: status_of(d) == "CANCELLED", "never CANCELLED", timeout=RUN_WAIT
        )

    assert still_same_page(browser)
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert "CANCELLED" in browser.title
    assert text_of(browser, "ff-fact-status") == "CANCELLED"
    assert text_of(browser, "ff-fact-finished") != "—"
    assert text_of(browser, "ff-fact-exit-code") != "—"
    assert text_of(browser, "ff-run-error").startswith("Error:")
    assert not shown(browser, "ff-cancel-run")
    assert shown(browser, "ff-retry-run")
    wait_until(
        browser,
        lambda d: d.find_element(By.ID, "ff-log").get_attribute("data-live") == "false",
        "the log never stopped",
    )
    assert_no_horizontal_scroll(browser)
    assert_theme(browser, "dark")
    assert_no_page_errors(browser)


@pytest.mark.parametrize(("theme", "size"), [("light", DESKTOP), ("dark", MOBILE)])
def test_the_pipeline_page_and_run_now_with_prefilled_parameters(
    browser, live_server, theme, size
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    make_pipeline(
        "report",
        "import os\nprint(os.environ['SCOPE'])\n",
        pipeline_json={
            "description": "The weekly report",
            "tags": ["finance"],
            "default_env": {"SCOPE": "full", "LIMIT": "100"},
            "schedules": [{"id": "quick", "default_env": {"LIMIT": "5"}}],
            "downstream_triggers": [{"pipeline": "notify"}],
        },
        requirements="requests\n",
    )
    make_pipeline("notify")
    login(browser, live_server)
    show(
        browser,
        live_server,
        reverse("admin:pipelines_app_pipeline_change", args=["report"]),
        theme=theme,
        size=size,
    )

    content = browser.find_element(By.ID, "content").text
    assert "The weekly report" in content and "finance" in content
    assert browser.find_element(By.CSS_SELECTOR, "#ff-code .ff-hl .kn").text == "import"
    assert "notify" in browser.find_element(By.ID, "ff-graph").text
    browser.find_element(By.CSS_SELECTOR, 'a[href="#ff-code-requirements-txt"]').click()
    assert browser.find_element(By.ID, "ff-code-requirements-txt").is_displayed()
    assert not browser.find_element(By.ID, "ff-code-main-py").is_displayed()
    assert_no_horizontal_scroll(browser)
    assert_theme(browser, theme)

    browser.find_element(By.ID, "ff-run-now").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "id_param_SCOPE"), "no Run now form")
    scope, limit = (browser.find_element(By.ID, f"id_param_{k}") for k in ("SCOPE", "LIMIT"))
    assert (scope.get_attribute("value"), limit.get_attribute("value")) == ("full", "100")
    Select(browser.find_element(By.ID, "id_run_config_id")).select_by_value("quick")
    assert limit.get_attribute("value") == "5"  # the configuration's default, put in by script
    scope.clear()
    scope.send_keys("delta")
    assert_no_horizontal_scroll(browser)
    browser.find_element(By.NAME, "_run").click()

    wait_until(browser, lambda d: d.find_elements(By.ID, "ff-run-live"), "Run now led nowhere")
    run = PipelineRun.objects.get()
    assert run.run_config_id == "quick" and run.parameters == {"SCOPE": "delta"}
    assert str(run.pk)[:8] in browser.find_element(By.CSS_SELECTOR, ".ff-page-head").text
    assert_no_page_errors(browser)
