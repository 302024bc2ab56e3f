"""The run list's options as changed for large histories (docs/admin-runs.md, "Large
histories"): search by run id prefix or exact pipeline name, one sort column with a fixed
tie-break, date links from index probes, an honest count and a page past the end that says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts_app.models import Role
from runs_app.admin_runs import PipelineRunAdmin
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_admin import client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:runs_app_pipelinerun_changelist")
COLUMNS = ["action_checkbox", *PipelineRunAdmin.list_display]


def listed(response) -> list[PipelineRun]:
    assert response.status_code == 200, response.content[:300]
    return list(response.context["cl"].result_list)


def runs_at(pipeline, *moments: datetime, **fields) -> list[PipelineRun]:
    return [make_run(pipeline, RunStatus.SUCCESS, queued_at=m, **fields) for m in moments]


@pytest.fixture
def admin_client():
    return client_for(Role.ADMIN)


# --- search -----------------------------------------------------------------------------------


def test_it_finds_a_run_by_its_id_or_a_prefix_of_four_or_more_characters(admin_client):
    etl = make_pipeline("etl")
    wanted, other = make_run(etl), make_run(etl)
    hex_id = wanted.pk.hex

    for term in (str(wanted.pk), hex_id.upper(), str(wanted.pk)[:4], f"  {hex_id[:9]}  "):
        found = listed(admin_client.get(CHANGELIST, {"q": term}))
        assert wanted in found and other not in found or hex_id[:4] == other.pk.hex[:4]


def test_a_prefix_shorter_than_four_characters_matches_nothing_and_the_help_says_why(
    admin_client,
):
    run = make_run(make_pipeline("etl"))

    response = admin_client.get(CHANGELIST, {"q": run.pk.hex[:3]})

    assert listed(response) == []
    assert "first 4 or more characters" in response.text


def test_an_exact_pipeline_name_lists_that_pipelines_runs(admin_client):
    etl, web = make_pipeline("etl"), make_pipeline("web")
    mine, theirs = make_run(etl), make_run(web)

    assert listed(admin_client.get(CHANGELIST, {"q": "etl"})) == [mine]
    assert theirs not in listed(admin_client.get(CHANGELIST, {"q": "et"}))


def test_text_that_is_neither_an_id_nor_a_pipeline_reads_no_runs_at_all(admin_client):
    make_run(make_pipeline("etl"))
    admin_client.get(CHANGELIST)  # warm the session and content types

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST, {"q": "no such thing"})

    assert listed(response) == []
    assert not [q for q in queries.captured_queries if "pipeline_runs" in q["sql"]]


# --- sorting ------------------------------------------------------------------------------------


def test_a_sort_breaks_ties_by_queue_time_in_the_same_direction(admin_client):
    etl = make_pipeline("etl")
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    failed = [
        make_run(etl, RunStatus.FAILED, queued_at=now - timedelta(minutes=i)) for i in range(3)
    ]
    ok = [make_run(etl, RunStatus.SUCCESS, queued_at=now - timedelta(minutes=i)) for i in range(3)]
    status = COLUMNS.index("status_column")

    ascending = listed(admin_client.get(CHANGELIST, {"o": str(status)}))
    descending = listed(admin_client.get(CHANGELIST, {"o": f"-{status}"}))

    assert ascending == [*reversed(failed), *reversed(ok)]  # FAILED < SUCCESS, oldest first
    assert descending == [*ok, *failed]


def test_only_the_first_of_several_sort_columns_is_used(admin_client):
    etl = make_pipeline("etl")
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    short = make_run(etl, RunStatus.SUCCESS, queued_at=now, duration=5.0, finished_at=now)
    long = make_run(etl, RunStatus.SUCCESS, queued_at=now, duration=50.0, finished_at=now)
    duration, status = COLUMNS.index("duration_column"), COLUMNS.index("status_column")

    response = admin_client.get(CHANGELIST, {"o": f"-{duration}.{status}"})

    assert listed(response) == [long, short]
    assert response.context["cl"].get_ordering_field_columns() == {duration: "desc"}


def test_the_stored_duration_sorts_the_list(admin_client):
    etl = make_pipeline("etl")
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    runs = [
        make_run(
            etl,
            RunStatus.SUCCESS,
            started_at=start,
            finished_at=start + timedelta(seconds=s),
            duration=float(s),
        )
        for s in (30, 5, 300)
    ]
    column = COLUMNS.index("duration_column")

    assert listed(admin_client.get(CHANGELIST, {"o": str(column)})) == [runs[1], runs[0], runs[2]]


# --- date links -----------------------------------------------------------------------------------


def date_choices(response) -> list[str]:
    return [choice["title"] for choice in response.context["choices"]]


def test_the_date_links_show_the_years_months_and_days_that_have_runs(admin_client):
    etl = make_pipeline("etl")
    runs_at(
        etl,
        datetime(2025, 12, 31, 23, tzinfo=UTC),
        datetime(2026, 2, 3, 8, tzinfo=UTC),
        datetime(2026, 2, 17, 9, tzinfo=UTC),
        datetime(2026, 7, 1, tzinfo=UTC),
    )

    years = admin_client.get(CHANGELIST)
    months = admin_client.get(CHANGELIST, {"queued_at__year": 2026})
    days = admin_client.get(CHANGELIST, {"queued_at__year": 2026, "queued_at__month": 2})
    one_day = admin_client.get(
        CHANGELIST, {"queued_at__year": 2026, "queued_at__month": 2, "queued_at__day": 17}
    )

    assert date_choices(years) == ["2025", "2026"]
    assert date_choices(months) == ["February 2026", "July 2026"]
    assert date_choices(days) == ["February 3", "February 17"]
    assert len(listed(days)) == 2 and len(listed(one_day)) == 1
    assert date_choices(one_day) == ["February 17"]
    assert one_day.context["back"]["title"] == "February 2026"


def test_the_date_links_follow_the_other_filters(admin_client):
    etl = make_pipeline("etl")
    runs_at(etl, datetime(2026, 2, 3, tzinfo=UTC))
    make_run(etl, RunStatus.FAILED, queued_at=datetime(2026, 4, 3, tzinfo=UTC))

    response = admin_client.get(CHANGELIST, {"queued_at__year": 2026, "status__exact": "FAILED"})

    assert date_choices(response) == ["April 2026"]


# --- the count and pages past the end -------------------------------------------------------------


def test_a_page_past_the_end_shows_the_last_page_and_says_so(admin_client):
    etl = make_pipeline("etl")
    now = datetime(2026, 5, 1, tzinfo=UTC)
    runs_at(etl, *(now - timedelta(minutes=i) for i in range(60)))

    response = admin_client.get(CHANGELIST, {"p": 500})

    assert len(listed(response)) == 10  # page 2 of 50 + 10
    assert response.context["cl"].page_num == 2
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert "Page 500 is past the last page (there are 2)" in message


def test_a_capped_count_says_more_than_and_how_to_go_further(admin_client, monkeypatch):
    from runs_app.admin_run_list import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "CAP", 3)
    etl = make_pipeline("etl")
    runs_at(etl, *(datetime(2026, 5, 1, tzinfo=UTC) - timedelta(minutes=i) for i in range(5)))
    monkeypatch.setattr(PipelineRunAdmin, "list_per_page", 2)

    first = admin_client.get(CHANGELIST)
    past = admin_client.get(CHANGELIST, {"p": 9})

    assert "More than 3 runs" in first.text
    assert past.context["cl"].page_num == 2
    (message,) = [str(m) for m in get_messages(past.wsgi_request)]
    assert "newest 3 matching runs" in message


def test_a_filter_sorted_by_another_column_past_the_cap_sorts_the_newest_matches(
    admin_client, monkeypatch
):
    from runs_app.admin_run_list import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "CAP", 3)
    etl, other = make_pipeline("etl"), make_pipeline("other")
    now = datetime(2026, 5, 1, tzinfo=UTC)
    # Oldest first; the oldest ran longest, so a sort of all five would put it on top.
    runs = [
        make_run(etl, RunStatus.SUCCESS, queued_at=now - timedelta(minutes=5 - i), duration=d)
        for i, d in enumerate([500.0, 400.0, 10.0, 30.0, 20.0])
    ]
    make_run(other, RunStatus.SUCCESS, queued_at=now, duration=999.0)
    column = COLUMNS.index("duration_column")

    response = admin_client.get(
        CHANGELIST, {"pipeline__pipeline_name__exact": "etl", "o": f"-{column}"}
    )

    assert listed(response) == [runs[3], runs[4], runs[2]]  # the newest 3, longest first
    assert response.context["cl"].sorted_within_cap
    assert "sorted among themselves" in response.text


def test_sorting_by_the_column_a_filter_fixes_needs_no_cap(admin_client, monkeypatch):
    from runs_app.admin_run_list import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "CAP", 3)
    etl = make_pipeline("etl")
    runs_at(etl, *(datetime(2026, 5, 1, tzinfo=UTC) - timedelta(minutes=i) for i in range(5)))
    status = COLUMNS.index("status_column")

    response = admin_client.get(CHANGELIST, {"status__exact": "SUCCESS", "o": str(status)})

    assert not response.context["cl"].sorted_within_cap


def test_a_month_sorted_by_duration_past_the_cap_sorts_its_newest_runs(admin_client, monkeypatch):
    from runs_app.admin_run_list import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "CAP", 2)
    etl = make_pipeline("etl")
    feb = [datetime(2026, 2, day, tzinfo=UTC) for day in (3, 10, 20)]
    old, mid, new = (
        make_run(etl, RunStatus.SUCCESS, queued_at=moment, duration=seconds)
        for moment, seconds in zip(feb, (900.0, 5.0, 50.0), strict=True)
    )
    make_run(etl, RunStatus.SUCCESS, queued_at=datetime(2026, 3, 1, tzinfo=UTC), duration=999.0)
    column = COLUMNS.index("duration_column")

    response = admin_client.get(
        CHANGELIST, {"queued_at__year": 2026, "queued_at__month": 2, "o": f"-{column}"}
    )

    assert listed(response) == [new, mid]  # February's newest 2, longest first; not March's
