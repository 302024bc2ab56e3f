"""Daemon pipelines: `restart_on_crash` (after the retries, once per crash, backing off when it
crash-loops, stopping when the pipeline is disabled) and `restart_interval` (stop the running
run, start a new one), with real engines and the real scheduler job function."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications_app.models import NotificationDelivery, NotificationEvent
from notifications_app.services import channel_create, notifications_send_due
from pipelines_app.models import Pipeline
from pipelines_app.services import pipeline_set_enabled
from runs_app.engine.scheduler import fire_schedule
from runs_app.logs import run_log_file
from runs_app.models import PipelineRun, RunStatus, ScheduledJob, ScheduleSource, TriggerType
from runs_app.outcome import Outcome
from runs_app.schedule_services import schedules_sync_from_pipelines
from runs_app.services import (
    run_cancel,
    run_claim_next,
    run_daemon_restart,
    run_enqueue,
    run_finish,
)
from tests.helpers_compat import BOTH_EXECUTORS, use_executor
from tests.helpers_engine import (
    EngineProcess,
    ThreadEngine,
    claim_now,
    claimed_run,
    finish_claimed,
    log_text,
    make_pipeline,
    wait_for,
    wait_until_finished,
    wait_until_idle,
)
from tests.helpers_notify import webhook_fixture  # noqa: F401 - the webhook fixture

CRASHES = "import sys\nprint('daemon up, crashing')\nsys.exit(3)\n"
SERVES = "import time\nprint('serving', flush=True)\nwhile True:\n    time.sleep(0.2)\n"


def daemon(name: str, main_py: str = CRASHES, **extra: object) -> Pipeline:
    return make_pipeline(
        name, main_py, pipeline_json={"restart_on_crash": True, "restart_cooldown": 5, **extra}
    )


def crash(run: PipelineRun, *, up_seconds: float = 1) -> PipelineRun:
    """Finish a claimed run as a crash after `up_seconds` of uptime (a log file to note in)."""
    started = timezone.now() - timedelta(seconds=up_seconds)
    PipelineRun.objects.filter(id=run.id).update(
        started_at=started, log_file=str(run_log_file(run))
    )
    run.refresh_from_db()
    return finish_claimed(run, 3)


def restart_of(run: PipelineRun) -> PipelineRun:
    return PipelineRun.objects.get(parent_run=run, triggered_by="daemon_restart")


@pytest.mark.django_db
def test_a_crashed_daemon_is_restarted_after_its_cooldown():
    pipeline = daemon("worker")
    run = claimed_run(pipeline, parameters={"MODE": "x"})
    before = timezone.now()

    crash(run)

    restart = restart_of(run)
    assert restart.status == RunStatus.PENDING
    assert restart.parameters == {"MODE": "x"}
    assert restart.restart_count == 1
    assert restart.idempotency_key == f"daemon_restart:{run.id}"
    assert before + timedelta(seconds=5) <= restart.not_before <= timezone.now() + timedelta(5)
    assert run_claim_next(engine_id="e") is None  # not before the cooldown
    assert f"restart_on_crash: restart queued as run {restart.id}" in log_text(run)


@pytest.mark.django_db
def test_retries_come_first_and_a_success_or_cancel_is_no_crash():
    pipeline = daemon("retrying", retry_attempts=1, retry_strategy={"delay": 0})
    first = claimed_run(pipeline)
    crash(first)
    retry = PipelineRun.objects.get(parent_run=first)
    assert retry.triggered_by == "retry"  # no restart while a retry is left

    crash(claim_now(retry))
    assert restart_of(retry).restart_count == 1

    ok = claimed_run(pipeline)
    finish_claimed(ok, 0)
    cancelled = claimed_run(pipeline)
    run_cancel(run=cancelled)
    finish_claimed(cancelled, 137)
    assert not PipelineRun.objects.filter(parent_run__in=[ok, cancelled]).exists()


@pytest.mark.django_db
def test_a_crash_loop_backs_off_and_a_stable_run_resets_the_streak(settings, webhook):
    settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    channel_create(name="ops", url=webhook.url())
    settings.FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS = 2
    settings.FASTFLOW_DAEMON_STABLE_SECONDS = 60
    settings.FASTFLOW_DAEMON_BACKOFF_MAX_SECONDS = 12
    pipeline = daemon("looping", restart_cooldown=2)
    run = claimed_run(pipeline)
    delays = []
    for _ in range(5):
        finished = crash(run, up_seconds=1)
        restart = restart_of(finished)
        wait = (restart.not_before - timezone.now()).total_seconds()
        delays.append((restart.restart_count, round(wait)))
        run = claim_now(restart)

    assert delays == [(1, 2), (2, 2), (3, 4), (4, 8), (5, 12)]  # doubled past 2, capped at 12
    fifth = PipelineRun.objects.get(restart_count=4)
    assert "restart_on_crash: crash loop, 5 quick crashes in a row" in log_text(fifth)
    # One notification event per backed-off restart (restarts 3, 4 and 5), replay-proof.
    events = NotificationEvent.objects.filter(kind="daemon_crash_loop").order_by("created_at")
    assert [e.run_id for e in events] == list(
        PipelineRun.objects.filter(restart_count__in=[2, 3, 4])
        .order_by("queued_at")
        .values_list("id", flat=True)
    )
    assert "crashed 5 times in a row" in events.last().details["summary"]
    run_finish(run=fifth, outcome=Outcome(exit_code=3))  # a replayed finish: nothing new
    assert NotificationEvent.objects.filter(kind="daemon_crash_loop").count() == 3
    assert set(
        NotificationDelivery.objects.filter(event__in=events).values_list("target_label", flat=True)
    ) == {"ops"}
    # Sent for real (Apprise to the webhook on 127.0.0.1), beside the crashes' run_failed ones.
    notifications_send_due(engine_id="e")
    loops = [
        p for p in webhook.posts if p["title"] == "[Fast-Flow] looping: daemon is crash-looping"
    ]
    assert len(loops) == 3, [p["title"] for p in webhook.posts]
    assert "crashed 5 times in a row" in loops[-1]["message"]
    assert f"Restart run: {restart_of(fifth).id}" in loops[-1]["message"]
    # Up longer than FASTFLOW_DAEMON_STABLE_SECONDS: not a quick crash, the streak restarts.
    stable = crash(run, up_seconds=120)
    assert restart_of(stable).restart_count == 1
    assert round((restart_of(stable).not_before - timezone.now()).total_seconds()) == 2


@pytest.mark.django_db
def test_the_pipeline_admin_shows_a_crash_loop(settings):
    from tests.helpers_admin import client_for

    settings.FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS = 1
    pipeline = daemon("looper", restart_interval="0 3 * * *")
    run = claimed_run(pipeline)
    for _ in range(3):
        run = claim_now(restart_of(crash(run)))
    client = client_for("READONLY")

    page = client.get(f"/admin/pipelines_app/pipeline/{pipeline.pk}/change/").content.decode()

    assert "Restarted after a crash, 5 s cooldown; restarted on cron 0 3 * * *" in page
    assert "Crash-looping: 3 quick crashes in a row" in page
    assert str(run.pk)[:8] in page


@pytest.mark.django_db
def test_no_restart_once_the_pipeline_is_disabled():
    pipeline = daemon("stopped")
    run = claimed_run(pipeline)
    pipeline_set_enabled(pipeline=pipeline, enabled=False)

    crash(run)

    assert not PipelineRun.objects.filter(parent_run=run).exists()
    assert "restart_on_crash: no restart queued: pipeline 'stopped' is disabled" in log_text(run)


@pytest.mark.django_db(transaction=True)
def test_a_crashing_daemon_keeps_restarting_until_it_is_disabled(settings):
    settings.FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS = 100
    pipeline = daemon("flapping", restart_cooldown=0)
    first = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_for(
            lambda: (
                PipelineRun.objects.filter(
                    triggered_by="daemon_restart", status=RunStatus.FAILED
                ).count()
                >= 2
            ),
            timeout=120,
            what="two crashed restarts",
        )
        pipeline_set_enabled(pipeline=pipeline, enabled=False)
        wait_until_idle()
        settled = PipelineRun.objects.count()
        wait_until_finished(first)

    runs = list(PipelineRun.objects.order_by("queued_at"))
    assert len(runs) == settled
    for run in runs[1:]:
        assert run.triggered_by == "daemon_restart" and run.parent_run_id is not None
    assert "daemon up, crashing" in log_text(runs[1])


@pytest.mark.django_db(transaction=True)
def test_two_engines_restart_each_crash_exactly_once(settings):
    crashes_soon = "import sys, time\ntime.sleep(0.5)\nsys.exit(1)\n"
    pipeline = daemon("shared", crashes_soon, restart_cooldown=1)
    run_enqueue(pipeline=pipeline, triggered_by="manual")

    with EngineProcess("a") as a, EngineProcess("b") as b:
        a.wait_registered()
        b.wait_registered()
        wait_for(
            lambda: PipelineRun.objects.filter(triggered_by="daemon_restart").count() >= 4,
            timeout=180,
            interval=0.2,
            what="four restarts",
        )
        pipeline_set_enabled(pipeline=pipeline, enabled=False)
        wait_until_idle()
        a.assert_alive()
        b.assert_alive()

    crashed = PipelineRun.objects.filter(status=RunStatus.FAILED)
    assert crashed.count() >= 4
    for run in crashed:
        restarts = PipelineRun.objects.filter(parent_run=run, triggered_by="daemon_restart")
        if restarts.count() == 0:  # crashed after the pipeline was disabled
            assert "restart_on_crash: no restart queued" in log_text(run)
        else:
            assert restarts.count() == 1
    chain = PipelineRun.objects.filter(triggered_by="daemon_restart")
    # One restart per crash: a single chain of parents, no crash restarted twice.
    assert chain.values("parent_run").distinct().count() == chain.count()


@pytest.mark.django_db
def test_restart_interval_becomes_a_daemon_restart_schedule():
    daemon("cron_daemon", restart_interval="0 3 * * *")
    daemon("every_daemon", restart_interval=90)

    schedules_sync_from_pipelines()

    jobs = {
        job.pipeline_id: (job.source, job.trigger_type, job.trigger_value)
        for job in ScheduledJob.objects.all()
    }
    assert jobs == {
        "cron_daemon": (ScheduleSource.DAEMON_RESTART, TriggerType.CRON, "0 3 * * *"),
        "every_daemon": (ScheduleSource.DAEMON_RESTART, TriggerType.INTERVAL, "90"),
    }
    assert ScheduledJob.objects.get(pipeline_id="cron_daemon").is_file_defined


@pytest.mark.django_db
def test_a_restart_tick_stops_the_running_run_once_and_supersedes_pending_restarts():
    pipeline = daemon("ticker", restart_interval=60, restart_cooldown=3)
    schedules_sync_from_pipelines()
    job = ScheduledJob.objects.get(pipeline=pipeline)
    running = claimed_run(pipeline)
    PipelineRun.objects.filter(id=running.id).update(log_file=str(run_log_file(running)))
    pending = run_enqueue(pipeline=pipeline, triggered_by="daemon_restart")

    fire_schedule(str(job.id), fire_time="2026-12-01T03:00:00+00:00")
    fire_schedule(str(job.id), fire_time="2026-12-01T03:00:00+00:00")  # the same tick again

    restarts = PipelineRun.objects.filter(scheduled_job=job)
    assert restarts.count() == 1
    restart = restarts.get()
    assert restart.triggered_by == "daemon_restart" and restart.status == RunStatus.PENDING
    running.refresh_from_db()
    pending.refresh_from_db()
    assert running.cancel_requested_at is not None and running.status == RunStatus.RUNNING
    assert pending.status == RunStatus.CANCELLED
    assert pending.error_message == "superseded by a restart_interval restart"
    assert f"restart_interval: stopping this run; run {restart.id} replaces it" in log_text(running)
    # Due after its cooldown, it still waits while the stopped instance runs.
    PipelineRun.objects.filter(id=restart.id).update(not_before=None)
    assert run_claim_next(engine_id="e") is None
    finish_claimed(running, 137)
    assert run_claim_next(engine_id="e").id == restart.id


@pytest.mark.django_db
def test_a_disabled_daemon_is_not_restarted_by_its_interval():
    pipeline = daemon("off", restart_interval=60)
    pipeline_set_enabled(pipeline=pipeline, enabled=False)

    from runs_app.errors import PipelineNotRunnable

    with pytest.raises(PipelineNotRunnable):
        run_daemon_restart(pipeline=pipeline, idempotency_key="daemon_interval:x:1")
    assert not PipelineRun.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("executor_name", BOTH_EXECUTORS)
def test_restart_interval_replaces_a_running_daemon_with_a_real_engine(
    executor_name, request, settings
):
    use_executor(request, settings, executor_name)
    pipeline = daemon("rotating", SERVES, restart_interval=4, restart_cooldown=0)
    schedules_sync_from_pipelines()
    first = run_enqueue(pipeline=pipeline, triggered_by="manual")

    def serving_restart() -> PipelineRun | None:
        restarts = PipelineRun.objects.filter(triggered_by="daemon_restart")
        return next((r for r in restarts if "serving" in log_text(r)), None)

    with ThreadEngine(executor=executor_name, schedules=True):
        second = wait_for(serving_restart, timeout=120, what="a restarted instance serving")
        pipeline_set_enabled(pipeline=pipeline, enabled=False)
        for run in PipelineRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]):
            run_cancel(run=run)
        wait_until_idle()

    first.refresh_from_db()
    assert first.status == RunStatus.CANCELLED and "serving" in log_text(first)
    assert second.scheduled_job.source == ScheduleSource.DAEMON_RESTART
    started = list(PipelineRun.objects.exclude(started_at=None).order_by("started_at"))
    assert len(started) >= 2
    for before, after in zip(started, started[1:], strict=False):
        assert after.started_at >= before.finished_at  # never beside the one it replaces
