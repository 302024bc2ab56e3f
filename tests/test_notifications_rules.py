"""Who hears about what: events, deduplication, per-pipeline and per-schedule settings, the
SSRF guard, the other event sources, and the ADMIN-only admin with its test action."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.utils import timezone

from accounts_app.models import Role
from notifications_app.errors import InvalidNotificationInput
from notifications_app.models import (
    DeliveryStatus,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
)
from notifications_app.sender import SendFailed, apprise_send
from notifications_app.services import (
    channel_create,
    deliveries_claim,
    notification_event_emit,
    notifications_send_due,
)
from runs_app.engine.base import Outcome
from runs_app.engine.identity import engines_sweep
from runs_app.engine.notify import RunningWatch
from runs_app.engine.scheduler import fire_schedule
from runs_app.models import EngineInstance, PipelineRun, RunStatus
from runs_app.notify import notify_warmup_failed
from runs_app.schedule_services import scheduledjob_create
from runs_app.services import run_finish
from secrets_app import crypto
from secrets_app.services import secret_set
from tests.helpers_accounts import make_user
from tests.helpers_engine import claimed_run, finish_claimed, make_pipeline
from tests.helpers_notify import mailbox_fixture, webhook_fixture  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_targets(settings) -> None:
    settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


def labels(run: PipelineRun, kind: str) -> set[str]:
    return set(
        NotificationDelivery.objects.filter(event__run_id=run.id, event__kind=kind).values_list(
            "target_label", flat=True
        )
    )


def test_a_finish_replayed_or_emitted_twice_records_one_event_and_one_delivery_per_target(webhook):
    channel_create(name="hook", url=webhook.url())
    pipeline = make_pipeline("p", pipeline_json={})
    run = finish_claimed(claimed_run(pipeline), 1)
    run_finish(run=run, outcome=Outcome(exit_code=1))  # a retried finish changes nothing
    again = notification_event_emit(kind="run_failed", key=f"run:{run.id}:failed", run_id=run.id)
    assert again is None
    assert NotificationEvent.objects.filter(run_id=run.id).count() == 1
    assert labels(run, "run_failed") == {"hook"}


def test_two_senders_claiming_at_once_send_each_delivery_once(webhook):
    channel_create(name="hook", url=webhook.url())
    pipeline = make_pipeline("p")
    finish_claimed(claimed_run(pipeline), 1)
    first = deliveries_claim(engine_id="engine-a")
    second = deliveries_claim(engine_id="engine-b")
    assert len(first) == 1 and second == []
    assert notifications_send_due(engine_id="engine-b") == 0
    from notifications_app.services import delivery_send

    assert delivery_send(delivery=first[0], engine_id="engine-a")
    assert len(webhook.posts) == 1
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)


def test_success_is_silent_unless_asked_and_recovery_follows_a_notified_failure(webhook):
    channel_create(name="all", url=webhook.url(), events=["run_failed", "run_recovered"])
    channel_create(name="chatty", url=webhook.url("chatty"), events=["run_succeeded"])
    pipeline = make_pipeline("p")
    ok = finish_claimed(claimed_run(pipeline), 0)
    assert labels(ok, "run_succeeded") == {"chatty"}
    assert not NotificationEvent.objects.filter(kind="run_recovered").exists()
    failed = finish_claimed(claimed_run(pipeline), 2)
    assert labels(failed, "run_failed") == {"all"}
    back = finish_claimed(claimed_run(pipeline), 0)
    assert labels(back, "run_recovered") == {"all"}
    later = finish_claimed(claimed_run(pipeline), 0)
    assert labels(later, "run_recovered") == set()


def test_pipeline_events_targets_and_a_schedule_override_decide_the_recipients(webhook):
    channel_create(name="global", url=webhook.url("g"))
    channel_create(name="team", url=webhook.url("t"), events=[])  # only when a pipeline names it
    secret_set(key="TEAM_HOOK", value=webhook.url("s"))
    pipeline = make_pipeline(
        "p",
        pipeline_json={
            "notifications": {
                "events": ["run_failed"],
                "targets": ["team", {"secret": "TEAM_HOOK"}],
            },
            "schedules": [
                {"id": "quiet", "notifications": {"global_targets": False, "targets": ["team"]}},
                {"id": "ghost", "notifications": {"targets": ["nobody"]}},
            ],
        },
    )
    plain = finish_claimed(claimed_run(pipeline), 1)
    assert labels(plain, "run_failed") == {"global", "team", "secret:TEAM_HOOK"}
    quiet = finish_claimed(claimed_run(pipeline, run_config_id="quiet"), 1)
    assert labels(quiet, "run_failed") == {"team"}
    ghost = finish_claimed(claimed_run(pipeline, run_config_id="ghost"), 1)
    missing = NotificationDelivery.objects.get(event__run_id=ghost.id, target_label="nobody")
    assert missing.status == DeliveryStatus.FAILED  # recorded, never silently dropped
    assert "does not exist" in missing.last_error
    # The pipeline's events replace every global target's own list for this pipeline, so
    # "team" (no events of its own) hears of ghost's failure as a global target too.
    assert labels(ghost, "run_failed") == {"global", "team", "nobody"}
    assert notifications_send_due(engine_id="e") == 3 + 1 + 2
    assert {p["title"] for p in webhook.posts} == {"[Fast-Flow] p: run failed"}


def test_pipeline_json_notifications_are_validated_like_every_other_key(make_pipeline_dir):
    from pipelines_app.models import Pipeline
    from pipelines_app.services import pipelines_sync

    make_pipeline_dir(
        "bad",
        pipeline_json={"notifications": {"events": ["run_faild"], "targets": ["json://h/x"]}},
    )
    make_pipeline_dir("typo", pipeline_json={"notifications": {"event": ["run_failed"]}})
    pipelines_sync()
    bad = Pipeline.objects.get(pipeline_name="bad")
    assert "key 'notifications.events': item 0: unknown event 'run_faild'" in bad.discovery_error
    assert "key 'notifications.targets': item 0: an Apprise URL carries credentials" in (
        bad.discovery_error
    )
    typo = Pipeline.objects.get(pipeline_name="typo")
    assert not typo.discovery_error
    assert any("did you mean 'events'" in w for w in typo.discovery_warnings)


def test_the_ssrf_guard_refuses_private_targets_unless_allowlisted(settings, webhook):
    settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS = []
    with pytest.raises(InvalidNotificationInput, match="not a public address"):
        channel_create(name="local", url=webhook.url())
    for url in (webhook.url(), "json://localhost:9/x", "json://169.254.169.254/latest"):
        with pytest.raises(SendFailed, match="refused to connect"):
            apprise_send(url=url, title="t", body="b", timeout=2)
    assert webhook.posts == []
    settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS = ["127.0.0.0/8"]
    apprise_send(url=webhook.url(), title="t", body="b")
    assert len(webhook.posts) == 1


def test_target_urls_are_stored_encrypted(webhook):
    channel = channel_create(name="hook", url=webhook.url())
    stored = NotificationChannel.objects.get(id=channel.id).url
    assert "127.0.0.1" not in stored
    assert crypto.decrypt(stored) == webhook.url()
    with pytest.raises(InvalidNotificationInput, match="not an Apprise URL"):
        channel_create(name="nonsense", url="nosuchscheme://x")


def test_a_late_tick_and_a_missed_tick_are_notified_once(webhook, settings):
    settings.FASTFLOW_NOTIFY_SCHEDULE_LATE_SECONDS = 30
    channel_create(name="hook", url=webhook.url())
    pipeline = make_pipeline("p")
    job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="60")
    on_time = datetime.now(UTC).isoformat()
    fire_schedule(str(job.id), fire_time=on_time)
    assert not NotificationEvent.objects.filter(kind="schedule_late").exists()
    late = (datetime.now(UTC) - timedelta(seconds=90)).isoformat()
    fire_schedule(str(job.id), fire_time=late)
    fire_schedule(str(job.id), fire_time=late)  # an old leader firing the same tick
    event = NotificationEvent.objects.get(kind="schedule_late")
    assert "fired 90 s late" in event.details["summary"]
    assert PipelineRun.objects.filter(scheduled_job=job).count() == 2

    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

    from runs_app.engine.scheduler import _on_missed

    missed_at = datetime.now(UTC) - timedelta(hours=1)
    _on_missed(JobExecutionEvent(EVENT_JOB_MISSED, str(job.id), "default", missed_at))
    missed = NotificationEvent.objects.filter(kind="schedule_late").exclude(id=event.id).get()
    assert "was missed" in missed.details["summary"]


def test_an_engine_gone_silent_is_notified_once_when_swept(webhook):
    channel_create(name="hook", url=webhook.url())
    stale = timezone.now() - timedelta(minutes=5)
    EngineInstance.objects.create(
        id="old-host:1:ns.abcd", hostname="old-host", pid=1, executor="docker", heartbeat_at=stale
    )
    assert engines_sweep(live=set()) == 1
    assert engines_sweep(live=set()) == 0
    event = NotificationEvent.objects.get(kind="engine_silent")
    assert "old-host:1:ns.abcd" in event.details["summary"]
    assert labels_of(event) == {"hook"}


def labels_of(event: NotificationEvent) -> set[str]:
    return set(event.deliveries.values_list("target_label", flat=True))


def test_long_running_and_memory_soft_limit_are_noticed_while_the_run_is_running(webhook, settings):
    channel_create(name="hook", url=webhook.url())
    pipeline = make_pipeline(
        "slow",
        pipeline_json={"mem_soft_limit": "10m", "notifications": {"expected_duration": 60}},
    )
    run = claimed_run(pipeline)
    metrics = Path(settings.METRICS_DIR) / f"{run.id}.jsonl"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"ts": "x", "cpu_percent": 1, "memory_bytes": 1024}) + "\n")
    PipelineRun.objects.filter(id=run.id).update(metrics_file=str(metrics))
    watch = RunningWatch()
    assert watch.check() == 0
    PipelineRun.objects.filter(id=run.id).update(started_at=timezone.now() - timedelta(seconds=61))
    with metrics.open("a") as fh:
        fh.write(json.dumps({"ts": "y", "cpu_percent": 1, "memory_bytes": 20 * 1024 * 1024}) + "\n")
    assert watch.check() == 2
    assert watch.check() == 0
    kinds = set(NotificationEvent.objects.filter(run_id=run.id).values_list("kind", flat=True))
    assert kinds == {"long_running", "memory_soft_limit"}
    summary = NotificationEvent.objects.get(kind="memory_soft_limit").details["summary"]
    assert "20.0 MiB" in summary and "10.0 MiB" in summary


def test_a_median_based_expectation_needs_history(settings):
    from runs_app.notify import expected_seconds

    pipeline = make_pipeline("p", pipeline_json={"notifications": {"long_running_factor": 3}})
    run = claimed_run(pipeline)
    assert expected_seconds(run=run) is None
    now = timezone.now()
    for seconds in (100, 110, 120, 130, 140):
        PipelineRun.objects.create(
            pipeline=pipeline,
            status=RunStatus.SUCCESS,
            started_at=now - timedelta(seconds=seconds),
            finished_at=now,
        )
    assert expected_seconds(run=run) == 360.0


def test_a_failed_warm_up_is_notified_once_per_requirements_version(webhook):
    channel_create(name="hook", url=webhook.url())
    pipeline = make_pipeline("deps", requirements="nothing-here==0\n")
    notify_warmup_failed(pipeline=pipeline, message="No solution found")
    notify_warmup_failed(pipeline=pipeline, message="No solution found")  # the 10-min retry
    assert NotificationEvent.objects.filter(kind="cache_warmup_failed").count() == 1


def test_only_admins_see_the_notifications_admin_and_the_url_is_never_shown_again(client, mailbox):
    admin = make_user("root", role=Role.ADMIN)
    writer = make_user("writer", role=Role.WRITE)
    client.force_login(writer)
    assert client.get("/admin/notifications_app/notificationchannel/").status_code == 403
    client.force_login(admin)
    url = mailbox.url()
    response = client.post(
        "/admin/notifications_app/notificationchannel/add/",
        {"name": "ops", "url": url, "events": ["run_failed", "engine_silent"], "enabled": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = NotificationChannel.objects.get(name="ops")
    assert channel.events == ["run_failed", "engine_silent"]
    page = client.get(f"/admin/notifications_app/notificationchannel/{channel.id}/change/")
    assert url not in page.content.decode() and "mailto://••••••" in page.content.decode()
    response = client.post(
        "/admin/notifications_app/notificationchannel/",
        {"action": "send_test", "_selected_action": [str(channel.id)]},
        follow=True,
    )
    assert "Test notification sent to ops." in response.content.decode()
    assert len(mailbox.messages) == 1
    assert mailbox.messages[0]["Subject"] == "[Fast-Flow] test notification"
    delivery = NotificationDelivery.objects.get(event__kind="test")
    assert delivery.attempt_rows.get().ok
    page = client.get(f"/admin/notifications_app/notificationdelivery/{delivery.id}/change/")
    assert page.status_code == 200
    refused = client.post(
        "/admin/notifications_app/notificationchannel/add/",
        {"name": "bad", "url": "nosuchscheme://x", "events": ["run_failed"]},
    )
    assert refused.status_code == 200 and "not an Apprise URL" in refused.content.decode()


def test_rotatesecrets_reencrypts_target_urls_too(settings, webhook):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FASTFLOW_ENCRYPTION_KEYS = [old]
    channel = channel_create(name="hook", url=webhook.url())
    settings.FASTFLOW_ENCRYPTION_KEYS = [new, old]
    call_command("rotatesecrets", stdout=StringIO())
    settings.FASTFLOW_ENCRYPTION_KEYS = [new]  # the old key can be retired
    assert crypto.decrypt(NotificationChannel.objects.get(id=channel.id).url) == webhook.url()


def test_a_bad_allowlist_entry_stops_the_start_naming_the_variable(settings):
    from django.core.exceptions import ImproperlyConfigured

    from notifications_app.apps import allowlist_check

    settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS = ["10.0.0.0/8", "not a host!"]
    with pytest.raises(ImproperlyConfigured, match="FASTFLOW_NOTIFY_ALLOWED_HOSTS: 'not a host!'"):
        allowlist_check()
