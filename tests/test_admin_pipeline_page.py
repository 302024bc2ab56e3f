"""The pipeline page: description, tags and badges, highlighted code (never the raw
pipeline.json), recent runs with a duration trend, schedules with their next fires, the
upstream/downstream graph, and a query count that does not grow with the history."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role
from pipelines_app.code_view import pygments_css
from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.models import PipelineRun, RunStatus
from runs_app.schedule_services import schedules_sync_from_pipelines
from tests.helpers_admin import client_for

pytestmark = pytest.mark.django_db

PYGMENTS_CSS = (
    Path(__file__).resolve().parent.parent / "pipelines_app/static/pipelines_app/pygments.css"
)
MAIN_PY = "import os\n\n# say hello\nprint('hello <b>world</b>')\n"


def page_url(name: str) -> str:
    return reverse("admin:pipelines_app_pipeline_change", args=[name])


def run_url(run: PipelineRun) -> str:
    return reverse("admin:runs_app_pipelinerun_change", args=[run.pk])


def sync(make_pipeline_dir, name: str, **kwargs) -> Pipeline:
    make_pipeline_dir(name, kwargs.pop("main_py", MAIN_PY), **kwargs)
    pipelines_sync()
    return Pipeline.objects.get(pk=name)


def finished_run(pipeline: Pipeline, status: str, seconds: float, minutes_ago: int) -> PipelineRun:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return PipelineRun.objects.create(
        pipeline=pipeline,
        status=status,
        queued_at=started - timedelta(seconds=1),
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
        exit_code=0 if status == RunStatus.SUCCESS else 1,
    )


def test_it_shows_description_tags_badges_and_highlighted_code(make_pipeline_dir) -> None:
    sync(
        make_pipeline_dir,
        "etl",
        pipeline_json={
            "description": "Loads the <nightly> export",
            "tags": ["finance", "daily"],
            "schedule_cron": "0 2 * * *",
            "webhook_key": "k" * 24,
            "mem_hard_limit": "512m",
            "cpu_hard_limit": 1,
            "timeout": 300,
            "retry_attempts": 2,
        },
        requirements="requests==2.32.3\n# pinned\n",
    )

    text = client_for(Role.READONLY).get(page_url("etl")).text

    assert "Loads the &lt;nightly&gt; export" in text
    assert (
        '<span class="ff-tag">finance</span>' in text
        and '<span class="ff-tag">daily</span>' in text
    )
    assert "cron 0 2 * * *" in text
    assert re.search(r"webhook</span> <b>on</b>", text)
    assert "1 CPU · 512 MiB RAM · timeout 5 min" in text
    assert "2 × fixed delay" in text
    # main.py highlighted by Pygments on the server, escaped, with line numbers.
    assert '<span class="kn">import</span>' in text
    assert '<span class="c1"># say hello</span>' in text
    assert "&lt;b&gt;world&lt;/b&gt;" in text and "<b>world</b>" not in text
    assert 'class="linenos"' in text
    assert "requests" in text and 'id="ff-code-requirements-txt"' in text
    # The file's webhook key never reaches the page (the normalised metadata hides it).
    assert "k" * 24 not in text
    assert "pipelines_app/pygments.css" in text


def test_a_main_py_that_leaves_the_pipelines_dir_is_not_shown(
    make_pipeline_dir, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("SECRET = 'outside the pipelines directory'\n")
    pipeline = sync(make_pipeline_dir, "sneaky")
    main = Path(pipeline.folder) / "main.py"
    main.unlink()
    os.symlink(outside, main)

    text = client_for(Role.ADMIN).get(page_url("sneaky")).text

    assert "outside the pipelines directory" in text  # the reason, not the content
    assert "SECRET" not in text


def test_recent_runs_have_a_duration_trend_linked_to_each_run(make_pipeline_dir) -> None:
    pipeline = sync(make_pipeline_dir, "etl")
    fast = finished_run(pipeline, RunStatus.SUCCESS, 10, minutes_ago=30)
    slow = finished_run(pipeline, RunStatus.FAILED, 90, minutes_ago=20)
    running = PipelineRun.objects.create(
        pipeline=pipeline,
        status=RunStatus.RUNNING,
        started_at=timezone.now() - timedelta(seconds=5),
    )

    text = client_for(Role.READONLY).get(page_url("etl")).text

    trend = text[text.index('class="ff-chart ff-chart-trend"') :]
    trend = trend[: trend.index("</svg>")]
    for run in (fast, slow, running):
        assert f'href="{run_url(run)}"' in trend
    assert "ff-s-FAILED" in trend and "ff-s-SUCCESS" in trend and "ff-s-RUNNING" in trend
    assert ">1 min<" in trend  # the y axis in round durations
    assert "p95" in text and "last 3 runs" in text
    assert "?pipeline__pipeline_name__exact=etl" in text  # every run of it, one click away


def test_schedules_show_their_next_fires_and_link_to_themselves(make_pipeline_dir) -> None:
    sync(make_pipeline_dir, "etl", pipeline_json={"schedule_cron": "*/5 * * * *"})
    schedules_sync_from_pipelines()

    text = client_for(Role.READONLY).get(page_url("etl")).text

    section = text[text.index('id="ff-schedules"') :]
    section = section[: section.index("</section>")]
    assert "cron */5 * * * *" in section
    assert section.count("data-ff-relative") == 3  # the next three fires
    assert "/admin/runs_app/scheduledjob/" in section


def test_the_graph_links_upstream_and_downstream_pipelines(make_pipeline_dir) -> None:
    make_pipeline_dir("extract", pipeline_json={"downstream_triggers": [{"pipeline": "load"}]})
    make_pipeline_dir(
        "load",
        pipeline_json={
            "downstream_triggers": [{"pipeline": "alert", "on_success": False, "on_failure": True}]
        },
    )
    make_pipeline_dir("alert")
    make_pipeline_dir("solo")
    pipelines_sync()

    client = client_for(Role.READONLY)
    text = client.get(page_url("load")).text

    graph = text[text.index('class="ff-chart ff-chart-graph"') :]
    graph = graph[: graph.index("</svg>")]
    assert f'href="{page_url("extract")}"' in graph and f'href="{page_url("alert")}"' in graph
    assert ">on success<" in graph and ">on failure<" in graph
    solo = client.get(page_url("solo")).text
    assert "ff-chart-graph" not in solo and "No pipeline triggers this one" in solo


def test_the_page_query_count_does_not_grow_with_runs_or_pipelines(make_pipeline_dir) -> None:
    pipeline = sync(make_pipeline_dir, "etl")
    client = client_for(Role.WRITE)
    finished_run(pipeline, RunStatus.SUCCESS, 3, minutes_ago=5)
    client.get(page_url("etl"))  # warm caches (content types, session)

    with CaptureQueriesContext(connection) as few:
        assert client.get(page_url("etl")).status_code == 200
    for index in range(30):
        finished_run(pipeline, RunStatus.FAILED, 3 + index, minutes_ago=4)
    for index in range(10):
        make_pipeline_dir(
            f"other{index}", pipeline_json={"downstream_triggers": [{"pipeline": "etl"}]}
        )
    pipelines_sync()
    with CaptureQueriesContext(connection) as many:
        assert client.get(page_url("etl")).status_code == 200

    assert len(many) == len(few)


def test_the_committed_pygments_css_is_what_the_code_view_generates() -> None:
    assert PYGMENTS_CSS.read_text() == pygments_css(), (
        "pipelines_app/static/pipelines_app/pygments.css is stale: run "
        "`.venv/bin/python scripts/pygments_css.py`"
    )


def test_a_notebook_pipeline_shows_its_cells_as_one_highlighted_script(settings) -> None:
    from tests.helpers_compat import code_cell, markdown_cell, write_notebook

    write_notebook(
        Path(settings.PIPELINES_DIR),
        "nb",
        [markdown_cell("# The report\nIt <b>counts</b>."), code_cell("import os\nprint(1)")],
    )
    pipelines_sync()
    assert not Pipeline.objects.get(pk="nb").discovery_error

    text = client_for(Role.READONLY).get(page_url("nb")).text

    assert 'href="#ff-code-main-ipynb"' in text and "main.py" not in text.split('id="ff-code"')[1]
    code = text[text.index('id="ff-code-main-ipynb"') :]
    code = re.sub(r"<[^>]+>", "", code[: code.index("</table>")])
    assert "# %% [markdown] cell 1" in code and "# It &lt;b&gt;counts&lt;/b&gt;." in code
    assert "# %% cell 2" in code and "import os" in code
    assert '"nbformat"' not in code  # the cells, not the file's JSON
