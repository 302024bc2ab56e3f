"""Retention on a real database with real files: what is deleted, what never is, files and
orphans, the dry run, the leader's chore and the admin."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts_app.models import Role
from runs_app.engine.cleanup import RetentionChore
from runs_app.logs import run_artifacts_dir
from runs_app.models import PipelineRun, RunStatus
from runs_app.retention import (
    ORPHAN_MIN_AGE_SECONDS,
    orphan_files_sweep,
    retention_policy,
    runs_retention_apply,
)
from tests.helpers_accounts import make_user
from tests.helpers_engine import make_pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _defaults(settings) -> None:
    settings.FASTFLOW_RETENTION_KEEP_RUNS = 0
    settings.FASTFLOW_RETENTION_DAYS = 30
    settings.FASTFLOW_RETENTION_FAILED_DAYS = 60
    settings.FASTFLOW_RETENTION_BATCH_PAUSE_SECONDS = 0


def old_run(pipeline, days: float, status: str = RunStatus.SUCCESS, **fields) -> PipelineRun:
    """A run queued `days` ago, with a log and a metrics file on disk."""
    from django.conf import settings

    run = PipelineRun.objects.create(
        pipeline=pipeline,
        status=status,
        queued_at=timezone.now() - timedelta(days=days),
        finished_at=None if status in (RunStatus.PENDING, RunStatus.RUNNING) else timezone.now(),
        **fields,
    )
    log = Path(settings.LOGS_DIR) / pipeline.pipeline_name / f"{run.id}.log"
    metrics = Path(settings.METRICS_DIR) / f"{run.id}.jsonl"
    for path in (log, metrics):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x" * 100 + "\n")
    PipelineRun.objects.filter(id=run.id).update(log_file=str(log), metrics_file=str(metrics))
    run.refresh_from_db()
    return run


def exists(run: PipelineRun) -> bool:
    return PipelineRun.objects.filter(id=run.id).exists()


def files_of(run: PipelineRun) -> list[bool]:
    return [Path(run.log_file).exists(), Path(run.metrics_file).exists()]


def test_old_runs_go_with_their_files_and_failed_runs_are_kept_longer():
    pipeline = make_pipeline("p")
    old_ok = old_run(pipeline, 40)
    old_cancelled = old_run(pipeline, 40, RunStatus.CANCELLED)
    old_failed = old_run(pipeline, 40, RunStatus.FAILED)
    ancient_failed = old_run(pipeline, 70, RunStatus.FAILED)
    recent = old_run(pipeline, 1)
    report = runs_retention_apply()
    assert report.runs == {"p": 3}
    assert report.files == 6 and report.bytes == 6 * 101
    for gone in (old_ok, old_cancelled, ancient_failed):
        assert not exists(gone) and files_of(gone) == [False, False]
    for kept in (old_failed, recent):
        assert exists(kept) and files_of(kept) == [True, True]


def test_a_deleted_runs_artifacts_go_with_it_and_their_folders_too():
    pipeline = make_pipeline("nb")
    old, recent = old_run(pipeline, 40), old_run(pipeline, 1)
    for run in (old, recent):
        folder = run_artifacts_dir(run)
        folder.mkdir(parents=True)
        (folder / "main.ipynb").write_text("{}" * 50)

    report = runs_retention_apply()

    assert report.runs == {"nb": 1}
    assert report.files == 3 and report.bytes == 2 * 101 + 100
    assert not run_artifacts_dir(old).exists()
    assert (run_artifacts_dir(recent) / "main.ipynb").is_file()


def test_never_deleted_running_pending_and_runs_a_live_retry_or_downstream_points_to():
    pipeline = make_pipeline("p")
    running = old_run(pipeline, 100, RunStatus.RUNNING)
    pending = old_run(pipeline, 100, RunStatus.PENDING)
    parent_of_retry = old_run(pipeline, 100, RunStatus.FAILED)
    old_run(pipeline, 0, RunStatus.PENDING, parent_run=parent_of_retry, triggered_by="retry")
    parent_of_downstream = old_run(pipeline, 100, RunStatus.SUCCESS)
    other = make_pipeline("other")
    old_run(other, 0, RunStatus.RUNNING, parent_run=parent_of_downstream, triggered_by="downstream")
    parent_of_done = old_run(pipeline, 100, RunStatus.SUCCESS)
    child_done = old_run(pipeline, 1, RunStatus.SUCCESS, parent_run=parent_of_done)

    report = runs_retention_apply()
    for kept in (running, pending, parent_of_retry, parent_of_downstream):
        assert exists(kept) and files_of(kept) == [True, True]
    assert not exists(parent_of_done)
    child_done.refresh_from_db()
    assert child_done.parent_run_id is None  # its finished child stays, unlinked
    assert report.runs == {"p": 1}


def test_keep_runs_per_pipeline_from_pipeline_json_overrides_the_global_default(settings):
    settings.FASTFLOW_RETENTION_DAYS = 0
    settings.FASTFLOW_RETENTION_FAILED_DAYS = 0
    settings.FASTFLOW_RETENTION_KEEP_RUNS = 3
    capped = make_pipeline("capped", pipeline_json={"retention": {"keep_runs": 2}})
    default = make_pipeline("default")
    unlimited = make_pipeline("forever", pipeline_json={"retention": {"keep_runs": 0}})
    runs = {
        p.pipeline_name: [old_run(p, 10 - i) for i in range(5)]
        for p in (capped, default, unlimited)
    }
    assert retention_policy(pipeline=capped).describe() == "keep the newest 2 runs"
    assert retention_policy(pipeline=unlimited).describe() == "keep everything"
    report = runs_retention_apply(batch_size=1)  # many small batches
    assert report.runs == {"capped": 3, "default": 2}
    assert [exists(r) for r in runs["capped"]] == [False, False, False, True, True]
    assert [exists(r) for r in runs["default"]] == [False, False, True, True, True]
    assert all(exists(r) for r in runs["forever"])


def test_a_failed_run_inside_failed_days_survives_the_count_limit(settings):
    settings.FASTFLOW_RETENTION_DAYS = 0
    pipeline = make_pipeline("p", pipeline_json={"retention": {"keep_runs": 1, "failed_days": 7}})
    failed_recent = old_run(pipeline, 3, RunStatus.FAILED)
    failed_old = old_run(pipeline, 9, RunStatus.FAILED)
    ok_old = old_run(pipeline, 2)
    newest = old_run(pipeline, 1)
    runs_retention_apply()
    assert exists(failed_recent) and exists(newest)
    assert not exists(failed_old) and not exists(ok_old)


def test_orphaned_files_are_swept_and_empty_folders_removed(settings):
    pipeline = make_pipeline("p")
    kept = old_run(pipeline, 1)
    stale_age = time.time() - ORPHAN_MIN_AGE_SECONDS - 10
    gone_pipeline_dir = Path(settings.LOGS_DIR) / "deleted-pipeline"
    gone_pipeline_dir.mkdir(parents=True)
    orphan_log = gone_pipeline_dir / f"{uuid.uuid4()}.log"
    orphan_metrics = Path(settings.METRICS_DIR) / f"{uuid.uuid4()}.jsonl"
    fresh_orphan = Path(settings.METRICS_DIR) / f"{uuid.uuid4()}.jsonl"  # a run committing now
    not_a_run = Path(settings.LOGS_DIR) / "notes.txt"
    for path in (orphan_log, orphan_metrics, fresh_orphan, not_a_run):
        path.write_text("y" * 10)
    for path in (orphan_log, orphan_metrics):
        os.utime(path, (stale_age, stale_age))
    assert orphan_files_sweep(dry_run=True) == (2, 20)
    assert orphan_log.exists()
    report = runs_retention_apply()
    assert (report.orphan_files, report.orphan_bytes) == (2, 20)
    assert not orphan_log.exists() and not orphan_metrics.exists()
    assert not gone_pipeline_dir.exists()  # emptied, removed
    assert fresh_orphan.exists() and not_a_run.exists() and files_of(kept) == [True, True]


def test_cleanupruns_dry_run_prints_and_deletes_nothing_then_deletes():
    pipeline = make_pipeline("p")
    old = [old_run(pipeline, 40) for _ in range(3)]
    out = StringIO()
    call_command("cleanupruns", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "p: keep 30 days; failed runs 60 days" in text
    assert "p: would delete 3 run(s)" in text
    assert all(exists(r) for r in old)
    out = StringIO()
    call_command("cleanupruns", stdout=out)
    assert "deleted 3 run(s) and 6 file(s)" in out.getvalue()
    assert not any(exists(r) for r in old)


def test_the_engine_applies_retention_only_while_it_leads(settings, monkeypatch):
    settings.FASTFLOW_RETENTION_INTERVAL_SECONDS = 1
    pipeline = make_pipeline("p")
    first = old_run(pipeline, 40)
    leading = {"now": False}
    chore = RetentionChore(is_leader=lambda: leading["now"])
    chore()
    assert exists(first)  # a follower never deletes
    leading["now"] = True
    chore()  # becoming leader: the first pass waits
    assert exists(first)
    time.sleep(1.1)
    chore()
    assert not exists(first)
    # Losing the lease stops a pass between batches.
    more = [old_run(pipeline, 40) for _ in range(3)]
    answers = iter([True, False])
    report = runs_retention_apply(batch_size=1, should_continue=lambda: next(answers, False))
    assert report.stopped_early and report.runs == {"p": 1}
    assert sum(exists(r) for r in more) == 2


def test_the_pipeline_admin_shows_log_disk_use_and_the_retention_in_force(client):
    pipeline = make_pipeline("p", pipeline_json={"retention": {"days": 7}})
    for _ in range(3):
        old_run(pipeline, 1)
    client.force_login(make_user("reader", role=Role.READONLY))
    page = client.get("/admin/pipelines_app/pipeline/p/change/").content.decode()
    assert "Log disk use" in page and "303\xa0bytes" in page
    assert "keep 7 days; failed runs 60 days" in page
    listing = client.get("/admin/pipelines_app/pipeline/").content.decode()
    assert "303\xa0bytes" in listing
