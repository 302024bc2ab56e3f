"""Schedules: pipeline.json → ScheduledJob rows, rows → APScheduler jobs, ticks → runs."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from django_apscheduler.models import DjangoJobExecution

from pipelines_app.services import pipeline_set_enabled, pipelines_sync
from runs_app.engine.scheduler import ScheduleMirror, fire_schedule
from runs_app.models import PipelineRun, ScheduledJob, ScheduleSource, TriggerType
from runs_app.schedule_services import (
    scheduledjob_create,
    scheduledjob_update,
    schedules_sync_from_pipelines,
)
from tests.helpers_engine import make_pipeline, wait_for

TOP_LEVEL = {
    "schedule_cron": "*/5  * * * *",
    "schedule_start": "2030-01-01",
    "run_once_at": "2031-01-01T10:00:00Z",
}
RUN_CONFIGS = {
    "schedules": [
        {"id": "hourly", "schedule_interval_seconds": 3600},
        {"id": "paused", "schedule_cron": "0 0 * * *", "enabled": False},
        {"id": "webhook_only", "webhook_key": "k" * 32},
    ],
}


def rows(pipeline: str = "etl") -> dict[tuple[str, str], ScheduledJob]:
    jobs = ScheduledJob.objects.filter(pipeline_id=pipeline, source=ScheduleSource.PIPELINE_JSON)
    return {(j.run_config_id, j.trigger_type): j for j in jobs}


@pytest.mark.django_db
def test_sync_creates_rows_for_the_top_level_schedule_and_run_once_at():
    make_pipeline("etl", pipeline_json=TOP_LEVEL)

    schedules_sync_from_pipelines()

    found = rows()
    assert set(found) == {("", TriggerType.CRON), ("", TriggerType.INTERVAL)}
    top = found[("", TriggerType.CRON)]
    assert top.trigger_value == "*/5 * * * *"
    assert top.start_date == datetime(2030, 1, 1, tzinfo=UTC)
    assert top.enabled
    once = found[("", TriggerType.INTERVAL)]
    assert once.start_date == once.end_date == datetime(2031, 1, 1, 10, tzinfo=UTC)


@pytest.mark.django_db
def test_sync_creates_a_row_per_scheduled_run_configuration():
    make_pipeline("multi", pipeline_json=RUN_CONFIGS)

    schedules_sync_from_pipelines()

    found = rows("multi")
    assert set(found) == {("hourly", TriggerType.INTERVAL), ("paused", TriggerType.CRON)}
    assert found[("hourly", TriggerType.INTERVAL)].trigger_value == "3600"
    assert found[("hourly", TriggerType.INTERVAL)].enabled
    assert not found[("paused", TriggerType.CRON)].enabled


@pytest.mark.django_db
def test_sync_updates_in_place_removes_what_is_gone_and_leaves_admin_rows(pipelines_dir):
    pipeline = make_pipeline(
        "etl", pipeline_json={"schedule_cron": "0 * * * *", "run_once_at": "2031-01-01T10:00Z"}
    )
    admin_row = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="30")
    schedules_sync_from_pipelines()
    before = rows()[("", TriggerType.CRON)]

    (pipelines_dir / "etl" / "pipeline.json").write_text('{"schedule_cron": "15 * * * *"}')
    pipelines_sync()
    report = schedules_sync_from_pipelines()

    after = rows()
    assert set(after) == {("", TriggerType.CRON)}
    assert after[("", TriggerType.CRON)].id == before.id
    assert after[("", TriggerType.CRON)].trigger_value == "15 * * * *"
    assert after[("", TriggerType.CRON)].updated_at > before.updated_at
    assert len(report.updated) == 1 and len(report.deleted) == 1
    assert ScheduledJob.objects.filter(id=admin_row.id).exists()


@pytest.mark.django_db
def test_a_second_sync_without_changes_touches_nothing():
    make_pipeline("etl", pipeline_json=TOP_LEVEL)
    schedules_sync_from_pipelines()
    stamps = {k: j.updated_at for k, j in rows().items()}

    report = schedules_sync_from_pipelines()

    assert not report.changed
    assert {k: j.updated_at for k, j in rows().items()} == stamps


@pytest.mark.django_db
def test_a_disabled_pipeline_disables_its_file_schedules():
    pipeline = make_pipeline("etl", pipeline_json={"schedule_interval_seconds": 60})
    schedules_sync_from_pipelines()

    pipeline_set_enabled(pipeline=pipeline, enabled=False)
    schedules_sync_from_pipelines()

    assert not rows()[("", TriggerType.INTERVAL)].enabled


@pytest.mark.django_db
def test_a_broken_file_keeps_its_schedules_and_a_removed_folder_drops_them(pipelines_dir):
    import shutil

    make_pipeline("etl", pipeline_json={"schedule_interval_seconds": 60})
    schedules_sync_from_pipelines()

    (pipelines_dir / "etl" / "pipeline.json").write_text("{broken")
    pipelines_sync()
    schedules_sync_from_pipelines()
    assert len(rows()) == 1

    shutil.rmtree(pipelines_dir / "etl")
    pipelines_sync()
    schedules_sync_from_pipelines()
    assert rows() == {}


@pytest.mark.django_db
def test_a_tick_enqueues_exactly_one_run_even_if_fired_twice():
    pipeline = make_pipeline(
        "etl", pipeline_json={"schedules": [{"id": "nightly", "schedule_cron": "0 3 * * *"}]}
    )
    job = scheduledjob_create(
        pipeline=pipeline, trigger_type="CRON", trigger_value="0 3 * * *", run_config_id="nightly"
    )
    tick = "2030-01-01T03:00:00+00:00"

    fire_schedule(str(job.id), fire_time=tick)
    fire_schedule(str(job.id), fire_time=tick)  # e.g. an old leader that has not stepped down
    fire_schedule(str(job.id), fire_time="2030-01-02T03:00:00+00:00")

    runs = PipelineRun.objects.order_by("queued_at")
    assert runs.count() == 2
    first = runs.first()
    assert (first.triggered_by, first.scheduled_job_id, first.run_config_id) == (
        "scheduler",
        job.id,
        "nightly",
    )
    assert first.idempotency_key == f"schedule:{job.id}:{tick}"


@pytest.mark.django_db
def test_a_disabled_pipelines_schedule_does_not_enqueue_and_says_why(caplog):
    pipeline = make_pipeline("etl")
    job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="60")
    pipeline_set_enabled(pipeline=pipeline, enabled=False)

    with caplog.at_level(logging.WARNING, logger="runs_app.engine.scheduler"):
        fire_schedule(str(job.id), fire_time="2030-01-01T00:00:00+00:00")

    assert not PipelineRun.objects.exists()
    assert "disabled" in caplog.text


@pytest.fixture
def mirror():
    mirror = ScheduleMirror()
    mirror.start()
    yield mirror
    mirror.stop()


@pytest.mark.django_db(transaction=True)
def test_the_mirror_follows_the_rows(mirror):
    pipeline = make_pipeline("etl")
    job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="600")
    off = scheduledjob_create(
        pipeline=pipeline, trigger_type="INTERVAL", trigger_value="60", enabled=False
    )

    assert mirror.sync() == 1
    first = mirror.scheduler.get_job(str(job.id))
    assert mirror.scheduler.get_job(str(off.id)) is None
    assert mirror.sync() == 0  # unchanged rows keep their job and next fire time
    assert mirror.scheduler.get_job(str(job.id)).next_run_time == first.next_run_time

    scheduledjob_update(job=job, trigger_type="CRON", trigger_value="0 4 * * 1")
    mirror.sync()
    edited = mirror.scheduler.get_job(str(job.id))
    assert edited.next_run_time.weekday() == 0  # cron day 1 = Monday, standard semantics
    assert (edited.next_run_time.hour, edited.next_run_time.minute) == (4, 0)

    scheduledjob_update(job=job, enabled=False)
    mirror.sync()
    assert mirror.scheduler.get_jobs() == []


@pytest.mark.django_db(transaction=True)
def test_an_interval_schedule_fires_one_run_per_tick(mirror):
    pipeline = make_pipeline("etl")
    job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="1")

    mirror.sync()
    wait_for(lambda: PipelineRun.objects.count() >= 3, timeout=15, what="three ticks")

    keys = list(PipelineRun.objects.values_list("idempotency_key", flat=True))
    ticks = sorted(datetime.fromisoformat(key.split(":", 2)[2]) for key in keys)
    assert len(set(keys)) == len(keys)
    assert all(b - a == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:], strict=False))
    assert set(PipelineRun.objects.values_list("scheduled_job", flat=True)) == {job.id}


def _missed_ticks(mirror: ScheduleMirror, job: ScheduledJob, seconds_ago: float) -> None:
    """As if no engine ran for a while: the stored next fire time lies in the past."""
    past = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    mirror.scheduler.modify_job(str(job.id), next_run_time=past)


@pytest.mark.django_db(transaction=True)
def test_missed_ticks_within_the_grace_time_coalesce_into_one_run(mirror):
    pipeline = make_pipeline("etl")
    job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="60")
    mirror.sync()

    _missed_ticks(mirror, job, seconds_ago=150)  # three ticks missed: -150, -90, -30 s

    wait_for(lambda: PipelineRun.objects.exists(), timeout=10, what="the catch-up run")
    time.sleep(1)
    assert PipelineRun.objects.count() == 1
    assert mirror.scheduler.get_job(str(job.id)).next_run_time > datetime.now(UTC)


@pytest.mark.django_db(transaction=True)
def test_ticks_missed_beyond_the_grace_time_are_skipped(settings):
    settings.FASTFLOW_SCHEDULE_GRACE_SECONDS = 5
    mirror = ScheduleMirror()
    mirror.start()
    try:
        pipeline = make_pipeline("etl")
        job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="60")
        mirror.sync()

        _missed_ticks(mirror, job, seconds_ago=100)  # the latest missed tick is 40 s old

        wait_for(
            lambda: DjangoJobExecution.objects.filter(status=DjangoJobExecution.MISSED).exists(),
            timeout=10,
            what="the tick to be recorded as missed",
        )
        assert not PipelineRun.objects.exists()
    finally:
        mirror.stop()
