"""The pipelines of tests/fixtures/original_template (one per feature of the original Fast-Flow
template) run unchanged end to end, with both executors: the folder is the pipelines directory
as it is, synced by discovery and run by a real engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines_app.models import Pipeline
from pipelines_app.services import pipeline_set_enabled, pipelines_sync
from runs_app.logs import run_artifacts
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_enqueue
from tests.helpers_compat import BOTH_EXECUTORS, use_executor
from tests.helpers_engine import (
    ThreadEngine,
    log_text,
    wait_for,
    wait_until_finished,
)

TEMPLATE = Path(__file__).parent / "fixtures" / "original_template"
READY = (
    "notebook_example",
    "daemon_example",
    "route_upstream",
    "route_big",
    "route_small",
    "encrypted_env_example",
    "expired_schedule",
    "run_once_past",
)
BROKEN = {
    "full_config_placeholders": "key 'encrypted_env.API_KEY': cannot be decrypted",
    "notebook_without_ipynb": '"type" is "notebook" but main.ipynb is missing',
    "two_entry_points": "both main.py and main.ipynb exist",
}


@pytest.fixture
def template(settings) -> None:
    settings.PIPELINES_DIR = TEMPLATE
    fixture_key = (TEMPLATE / "FIXTURE_KEY").read_text().strip()
    settings.FASTFLOW_ENCRYPTION_KEYS = [*settings.FASTFLOW_ENCRYPTION_KEYS, fixture_key]


def snapshot() -> dict[str, int]:
    return {str(p.relative_to(TEMPLATE)): p.stat().st_mtime_ns for p in TEMPLATE.rglob("*")}


@pytest.mark.django_db
def test_discovery_of_the_template_says_what_works_and_what_not(template):
    report = pipelines_sync()

    states = {p.pipeline_name: p.state for p in Pipeline.objects.all()}
    assert states == {**dict.fromkeys(READY, "ready"), **dict.fromkeys(BROKEN, "broken")}
    for name, error in BROKEN.items():
        assert error in Pipeline.objects.get(pk=name).discovery_error
    assert report.warnings == {
        "expired_schedule": [
            "pipeline.json: key 'schedule_end': the schedule window ended at "
            "2025-12-31T23:59:59Z, so this schedule never fires again (move schedule_end or "
            "remove the schedule)"
        ],
        "run_once_past": [
            "pipeline.json: key 'run_once_at': 2026-01-15T12:00:00Z is in the past, so no "
            "further run happens (set a future time or remove the key)"
        ],
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("executor_name", BOTH_EXECUTORS)
def test_every_ready_pipeline_of_the_template_runs_unchanged(
    executor_name, template, request, settings
):
    use_executor(request, settings, executor_name)
    before = snapshot()
    pipelines_sync()
    runs = {
        name: run_enqueue(pipeline=name, triggered_by="manual")
        for name in READY
        if name not in ("route_big", "route_small")
    }

    with ThreadEngine(executor=executor_name):
        for run in runs.values():
            wait_until_finished(run, timeout=300)
        restart = wait_for(
            lambda: PipelineRun.objects.filter(
                pipeline_id="daemon_example", parent_run=runs["daemon_example"]
            ).first(),
            timeout=60,
            what="the daemon's restart",
        )
        wait_until_finished(restart, timeout=120)
        pipeline_set_enabled(
            pipeline=Pipeline.objects.get(pk="daemon_example"), enabled=False
        )  # ends the restart chain
        downstream = wait_for(
            lambda: PipelineRun.objects.filter(pipeline_id="route_big").first(), timeout=60
        )
        wait_until_finished(downstream, timeout=120)
        wait_for(
            lambda: (
                not PipelineRun.objects.filter(
                    status__in=[RunStatus.PENDING, RunStatus.RUNNING]
                ).exists()
            ),
            timeout=120,
            what="every run to end",
        )

    status = {name: run.status for name, run in runs.items()}
    assert status == {
        "notebook_example": RunStatus.SUCCESS,
        "daemon_example": RunStatus.FAILED,
        "route_upstream": RunStatus.SUCCESS,
        "encrypted_env_example": RunStatus.SUCCESS,
        "expired_schedule": RunStatus.SUCCESS,
        "run_once_past": RunStatus.SUCCESS,
    }, {name: log_text(run)[-2000:] for name, run in runs.items()}
    notebook = runs["notebook_example"]
    assert "cell 2 succeeded on attempt 2" in log_text(notebook)
    assert "notebook: code cell 2 of 4 failed: RuntimeError: first attempt fails on purpose" in (
        log_text(notebook)
    )
    assert [a.name for a in run_artifacts(run=notebook)] == ["main.ipynb"]
    assert "Cell is missing an id field" not in log_text(notebook)
    assert restart.triggered_by == "daemon_restart" and restart.status == RunStatus.FAILED
    assert "[daemon_example] heartbeat 3" in log_text(restart)
    assert runs["route_upstream"].route == "big"
    assert downstream.status == RunStatus.SUCCESS
    assert "route_big triggered by downstream" in log_text(downstream)
    assert not PipelineRun.objects.filter(pipeline_id="route_small").exists()
    assert "API_KEY has 20 characters: ***" in log_text(runs["encrypted_env_example"])
    assert snapshot() == before  # nothing was written into the pipelines folder
