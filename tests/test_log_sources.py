"""Every reader of a run's log tells the pipeline's stdout, its stderr and the engine's notes
apart by the line's source, never by its text: the admin page, its live-log endpoint, the API's
tail and stream. Logs of the format before sources still display."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts_app.models import Role
from runs_app.models import RunStatus
from tests.helpers_admin import client_for as admin_client_for
from tests.helpers_admin import make_pipeline, make_run
from tests.test_api_logs_stream import consume, parse_events

pytestmark = pytest.mark.django_db

CURRENT = (
    "n 2026-11-27T22:45:00.100Z environment ready in 0.100 s\n"
    "o 2026-11-27T22:45:00.200Z hello <b>world</b>\n"
    "o 2026-11-27T22:45:00.300Z [fastflow] timeout after 1 s: container killed\n"
    "e 2026-11-27T22:45:00.400Z Traceback (most recent call last):\n"
    "n 2026-11-27T22:45:01.000Z timeout after 5 s: container killed\n"
)
FORMAT_1 = (
    "2026-11-27T22:45:00.100Z [fastflow] environment ready in 0.100 s\n"
    "2026-11-27T22:45:00.200Z hello from an old log\n"
)


def change_url(run) -> str:
    return reverse("admin:runs_app_pipelinerun_change", args=[run.pk])


def log_url(run) -> str:
    return reverse("admin:runs_app_pipelinerun_log", args=[run.pk])


def test_the_run_page_renders_each_line_by_its_source():
    run = make_run(make_pipeline(), RunStatus.FAILED, log=CURRENT)

    page = admin_client_for(Role.READONLY).get(change_url(run)).text

    assert page.count('data-source="note"') == 2
    assert page.count('data-source="stderr"') == 1
    assert page.count('data-source="stdout"') == 2
    # The forged note is a stdout line that only says what a note says.
    forged = page.index("[fastflow] timeout after 1 s")
    assert page.rindex('data-source="stdout"', 0, forged) > page.rindex(
        'data-source="note"', 0, forged
    )
    assert "hello &lt;b&gt;world&lt;/b&gt;" in page  # text, never HTML


def test_the_live_log_endpoint_returns_sources_times_and_the_next_offset():
    run = make_run(make_pipeline(), RunStatus.RUNNING, log=CURRENT)

    body = admin_client_for(Role.READONLY).get(log_url(run), {"offset": 0}).json()

    assert [(x["source"], x["text"]) for x in body["lines"]] == [
        ("note", "environment ready in 0.100 s"),
        ("stdout", "hello <b>world</b>"),
        ("stdout", "[fastflow] timeout after 1 s: container killed"),
        ("stderr", "Traceback (most recent call last):"),
        ("note", "timeout after 5 s: container killed"),
    ]
    assert body["lines"][0]["time"] == "2026-11-27T22:45:00.100Z"
    assert body["offset"] == len(CURRENT.encode())


def test_a_log_of_the_format_before_sources_still_displays():
    run = make_run(make_pipeline(), RunStatus.SUCCESS, log=FORMAT_1)

    client = admin_client_for(Role.READONLY)
    page = client.get(change_url(run)).text
    body = client.get(log_url(run), {"offset": 0}).json()

    assert "hello from an old log" in page
    assert [(x["source"], x["time"], x["text"]) for x in body["lines"]] == [
        ("unknown", "2026-11-27T22:45:00.100Z", "[fastflow] environment ready in 0.100 s"),
        ("unknown", "2026-11-27T22:45:00.200Z", "hello from an old log"),
    ]


def test_the_api_tail_and_stream_carry_each_lines_source():
    from tests.helpers_api import client_for as api_client_for

    run = make_run(make_pipeline(), RunStatus.SUCCESS, log=CURRENT)
    api = api_client_for(Role.READONLY)

    tail = api.get(f"/api/runs/{run.id}/logs/", {"offset": 0})
    events = parse_events(consume(api.get(f"/api/runs/{run.id}/logs/stream/")))

    assert tail.content.decode() == CURRENT
    lines = [event["data"] for event in events if "event" not in event]
    assert [line[:2] for line in lines] == ["n ", "o ", "o ", "e ", "n "]
    assert events[-1]["event"] == "end"
    second = int(events[0]["id"])
    resumed = api.get(f"/api/runs/{run.id}/logs/", {"offset": second})
    assert resumed.content.decode() == CURRENT.split("\n", 1)[1]
