"""Run files are sharded so no folder holds the whole history: `logs/<pipeline>/<shard>/`,
`metrics/<pipeline>/<shard>/`; files of the old flat layout keep working through their rows,
and `manage.py runfiles_shard` moves them (safely, repeatably)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role, User
from runs_app.logs import run_log_file, run_metrics_file
from runs_app.models import PipelineRun, RunStatus
from runs_app.run_files import run_files_shard
from tests import helpers_admin

pytestmark = pytest.mark.django_db


def test_a_pipelines_runs_spread_over_256_folders():
    pipeline = helpers_admin.make_pipeline("etl")
    runs = [PipelineRun(id=uuid.uuid4(), pipeline=pipeline) for _ in range(4000)]

    folders = Counter(run_log_file(run).parent for run in runs)

    assert {f.parent for f in folders} == {Path(settings.LOGS_DIR) / "etl"}
    assert len(folders) == 256
    assert max(folders.values()) < 40  # ~16 each: 4,000 runs, none in a crowd
    assert {run_metrics_file(r).parent.parent for r in runs} == {Path(settings.METRICS_DIR) / "etl"}


def old_layout_run(pipeline, status=RunStatus.SUCCESS, *, ended_ago=timedelta(hours=1)):
    """A run whose files are where they were before sharding (flat metrics folder)."""
    now = timezone.now()
    run = helpers_admin.make_run(
        pipeline,
        status,
        started_at=now - ended_ago - timedelta(seconds=5),
        finished_at=now - ended_ago if status != RunStatus.RUNNING else None,
    )
    log = Path(settings.LOGS_DIR) / pipeline.pipeline_name / f"{run.id}.log"
    metrics = Path(settings.METRICS_DIR) / f"{run.id}.jsonl"
    for path, text in ((log, f"log of {run.id}\n"), (metrics, '{"cpu_percent": 5.0}\n')):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    PipelineRun.objects.filter(id=run.id).update(log_file=str(log), metrics_file=str(metrics))
    run.refresh_from_db()
    return run


def page_of(run) -> str:
    reader, _ = User.objects.get_or_create(username="reader", defaults={"role": Role.READONLY})
    client = Client()
    client.force_login(reader)
    return client.get(reverse("admin:runs_app_pipelinerun_change", args=[run.pk])).text


def test_files_of_the_old_layout_keep_working():
    run = old_layout_run(helpers_admin.make_pipeline())

    assert f"log of {run.id}" in page_of(run)


def test_the_command_moves_old_files_and_the_rows_follow():
    pipeline = helpers_admin.make_pipeline("etl")
    runs = [old_layout_run(pipeline) for _ in range(3)]
    out = StringIO()

    call_command("runfiles_shard", "--batch", "2", stdout=out)

    assert "6 file(s) moved" in out.getvalue()
    for run in runs:
        old_log, old_metrics = Path(run.log_file), Path(run.metrics_file)
        run.refresh_from_db()
        assert run.log_file == str(run_log_file(run)) and Path(run.log_file).is_file()
        assert run.metrics_file == str(run_metrics_file(run)) and Path(run.metrics_file).is_file()
        assert not old_log.exists() and not old_metrics.exists()
        assert f"log of {run.id}" in page_of(run)
        assert Path(run.log_file).parent.stat().st_mode & 0o777 == 0o700  # private, as all
    assert not list(Path(settings.METRICS_DIR).glob("*.jsonl"))  # the flat folder is empty
    assert run_files_shard().summary().startswith("0 file(s) moved")  # again: nothing to do


def test_live_and_just_finished_runs_are_left_alone():
    pipeline = helpers_admin.make_pipeline("etl")
    live = old_layout_run(pipeline, RunStatus.RUNNING)
    just_ended = old_layout_run(pipeline, ended_ago=timedelta(seconds=5))

    report = run_files_shard()

    assert report.moved == 0
    for run in (live, just_ended):
        stored = run.log_file
        run.refresh_from_db()
        assert run.log_file == stored and Path(stored).is_file()


def test_a_file_moved_before_a_crash_gets_its_row_repaired():
    run = old_layout_run(helpers_admin.make_pipeline("etl"))
    target = run_log_file(run)
    target.parent.mkdir(parents=True)
    Path(run.log_file).rename(target)  # moved, but the row was never updated

    report = run_files_shard()

    run.refresh_from_db()
    assert report.repaired == 1 and run.log_file == str(target)


def test_a_dry_run_counts_and_changes_nothing():
    run = old_layout_run(helpers_admin.make_pipeline("etl"))
    Path(run.metrics_file).unlink()  # gone before the command ran
    out = StringIO()

    call_command("runfiles_shard", "--dry-run", stdout=out)

    stored = run.log_file
    run.refresh_from_db()
    assert out.getvalue().strip() == (
        "would be: 1 file(s) moved, 0 row(s) repaired, 1 file(s) missing, 0 failed"
    )
    assert run.log_file == stored and Path(stored).is_file()
