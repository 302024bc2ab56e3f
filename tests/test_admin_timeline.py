"""The run timeline: a lane per pipeline, overlapping runs on lanes of their own, bars linked to
their runs, a window to choose, a cap on the runs read, and a fixed number of queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role
from runs_app import admin_timeline
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_admin import client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db

TIMELINE = reverse("admin:runs_app_pipelinerun_timeline")


def ran(pipeline, status: str, *, minutes_ago: float, seconds: float) -> PipelineRun:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return make_run(
        pipeline,
        status,
        queued_at=started - timedelta(seconds=5),
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
    )


def test_each_pipeline_has_a_lane_and_overlapping_runs_get_their_own() -> None:
    etl, report = make_pipeline("etl"), make_pipeline("report")
    first = ran(etl, RunStatus.SUCCESS, minutes_ago=30, seconds=600)
    overlapping = ran(etl, RunStatus.FAILED, minutes_ago=25, seconds=60)
    later = ran(etl, RunStatus.SUCCESS, minutes_ago=10, seconds=60)
    ran(report, RunStatus.CANCELLED, minutes_ago=50, seconds=30)
    old = ran(report, RunStatus.SUCCESS, minutes_ago=600, seconds=30)  # outside 6 h

    text = client_for(Role.READONLY).get(TIMELINE).text

    svg = re.search(r'<svg class="ff-chart ff-chart-timeline".*?</svg>', text, re.S).group(0)
    assert ">etl<" in svg and ">report<" in svg
    # etl needs two lanes (the first run overlaps the second), report one: three in all.
    assert svg.count('class="ff-chart-lane"') == 3
    for run in (first, overlapping, later):
        assert reverse("admin:runs_app_pipelinerun_change", args=[run.pk]) in svg
    assert str(old.pk) not in svg
    assert "ff-s-FAILED" in svg and "ff-s-CANCELLED" in svg and "ff-chart-wait" in svg
    assert "4 runs since" in text


def test_a_pipeline_and_a_window_can_be_chosen() -> None:
    etl, report = make_pipeline("etl"), make_pipeline("report")
    ran(etl, RunStatus.SUCCESS, minutes_ago=60 * 20, seconds=60)
    ran(report, RunStatus.SUCCESS, minutes_ago=5, seconds=60)
    client = client_for(Role.READONLY)

    day = client.get(TIMELINE, {"window": "24h", "pipeline": "etl"}).text
    hour = client.get(TIMELINE, {"window": "1h"}).text

    assert ">etl<" in day and ">report<" not in day and "1 run since" in day
    assert ">report<" in hour and ">etl<" not in hour
    assert 'href="?window=24h&amp;pipeline=etl" aria-current="true"' in day


def test_the_run_list_links_to_the_timeline_of_its_pipeline() -> None:
    make_pipeline("etl")
    changelist = reverse("admin:runs_app_pipelinerun_changelist")

    text = client_for(Role.READONLY).get(changelist, {"pipeline__pipeline_name__exact": "etl"}).text

    assert f'href="{TIMELINE}?pipeline=etl"' in text


def test_it_reads_at_most_the_cap_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(admin_timeline, "MAX_RUNS", 5)
    etl = make_pipeline("etl")
    for index in range(7):
        ran(etl, RunStatus.SUCCESS, minutes_ago=30 - index, seconds=10)

    text = client_for(Role.READONLY).get(TIMELINE).text

    assert "5 runs since" in text and "the newest 5 shown" in text


def test_the_timeline_query_count_does_not_grow_with_runs() -> None:
    etl = make_pipeline("etl")
    client = client_for(Role.READONLY)
    ran(etl, RunStatus.SUCCESS, minutes_ago=5, seconds=10)
    client.get(TIMELINE)

    with CaptureQueriesContext(connection) as few:
        client.get(TIMELINE)
    for index in range(30):
        ran(make_pipeline(f"p{index}"), RunStatus.FAILED, minutes_ago=20, seconds=10)
    with CaptureQueriesContext(connection) as many:
        client.get(TIMELINE)

    assert len(many) == len(few)
