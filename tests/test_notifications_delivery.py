"""Failure notifications end to end: real engines, a real SMTP server and a real HTTP endpoint.

A run that fails after its retries produces exactly one email and one webhook message with two
engines running; the next success produces one recovery message; a dead target is retried and
recorded without delaying the next run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from notifications_app.models import (
    DeliveryStatus,
    NotificationAttempt,
    NotificationDelivery,
    NotificationEvent,
)
from notifications_app.services import channel_create
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_enqueue
from secrets_app.services import secret_set
from tests.helpers_engine import EngineProcess, ThreadEngine, make_pipeline, wait_for
from tests.helpers_notify import (  # noqa: F401 - fixtures
    free_port,
    hanging_endpoint_fixture,
    mailbox_fixture,
    webhook_fixture,
)

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "hunter2-very-secret-token"
FAILING = (
    "import os, sys\n"
    "for i in range(30):\n"
    "    print('step', i)\n"
    "print('connecting with', os.environ['API_TOKEN'])\n"
    "print('giving up')\n"
    "sys.exit(3)\n"
)
SUCCEEDING = "print('all good')\n"


def _engine(name: str) -> EngineProcess:
    return EngineProcess(
        name,
        FASTFLOW_NOTIFY_ALLOWED_HOSTS="127.0.0.1",
        FASTFLOW_NOTIFY_POLL_SECONDS="0.2",
        FASTFLOW_MAX_CONCURRENT_RUNS="4",
    )


def test_a_run_failing_after_its_retries_sends_one_email_and_one_webhook_then_one_recovery(
    mailbox, webhook, settings
):
    settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    secret_set(key="API_TOKEN", value=SECRET)
    pipeline = make_pipeline(
        "nightly",
        FAILING,
        pipeline_json={
            "secrets": ["API_TOKEN"],
            "retry_attempts": 1,
            "retry_strategy": {"type": "fixed_delay", "delay": 0},
        },
    )
    # The run outcomes only: on a loaded machine an engine's heartbeat can go stale for a moment
    # and its engine_silent message (a default event) is not what this test counts.
    outcomes = ["run_failed", "retries_exhausted", "run_recovered"]
    channel_create(name="ops-mail", url=mailbox.url(), events=outcomes)
    channel_create(name="ops-hook", url=webhook.url(), events=outcomes)

    with _engine("a") as a, _engine("b") as b:
        a.wait_registered()
        b.wait_registered()
        first = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: len(mailbox.messages) >= 1 and len(webhook.posts) >= 1, timeout=90)
        retry = PipelineRun.objects.get(parent_run=first)
        assert retry.status == RunStatus.FAILED and retry.retry_attempt == 1
        time.sleep(3)  # both engines keep polling: nothing more may arrive
        assert len(mailbox.messages) == 1
        assert len(webhook.posts) == 1

        mail, post = mailbox.messages[0], webhook.posts[0]
        body = mailbox.bodies()[0]
        assert mail["Subject"] == "[Fast-Flow] nightly: run failed after all its retries"
        assert post["title"] == mail["Subject"]
        for text in (body, post["message"]):
            assert "The run failed after 1 retry." in text
            assert "Pipeline: nightly" in text
            assert f"Run: {retry.id}" in text
            assert "Status: FAILED" in text
            assert "Exit code: 3" in text
            assert (
                f"{settings.FASTFLOW_BASE_URL}/admin/runs_app/pipelinerun/{retry.id}/change/"
                in text
            )
            assert "giving up" in text and "step 29" in text
            assert "connecting with ***" in text
            assert "step 9\n" not in text  # the last 20 lines only
            assert "\nPipeline: nightly\n" in text
            assert SECRET not in text
        # The first attempt's failure was not final (a retry followed): no message for it.
        assert not NotificationEvent.objects.filter(run_id=first.id).exists()
        deliveries = NotificationDelivery.objects.filter(event__run_id=retry.id)
        assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
        assert sorted(d.attempts for d in deliveries) == [1, 1]

        (Path(settings.PIPELINES_DIR) / "nightly" / "main.py").write_text(SUCCEEDING)
        recovered = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: len(mailbox.messages) >= 2 and len(webhook.posts) >= 2, timeout=60)
        time.sleep(2)
        # Another success is not news: still exactly one recovery message per target.
        again = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: PipelineRun.objects.get(id=again.id).is_terminal, timeout=60)
        time.sleep(2)
        a.assert_alive()
        b.assert_alive()

    assert len(mailbox.messages) == 2 and len(webhook.posts) == 2
    assert mailbox.messages[1]["Subject"] == "[Fast-Flow] nightly: recovered: run succeeded again"
    assert f"Run: {recovered.id}" in webhook.posts[1]["message"]
    assert NotificationAttempt.objects.filter(ok=True).count() == 4
    assert not NotificationAttempt.objects.filter(ok=False).exists()
    for engine in (a, b):
        assert "Traceback" not in engine.read_output(), engine.read_output()


def test_a_dead_target_is_retried_and_recorded_without_delaying_the_next_run(
    hanging_endpoint, webhook, settings
):
    settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.FASTFLOW_NOTIFY_TIMEOUT_SECONDS = 5.0
    settings.FASTFLOW_NOTIFY_RETRY_SECONDS = 0.5
    settings.FASTFLOW_NOTIFY_MAX_ATTEMPTS = 3
    settings.FASTFLOW_NOTIFY_POLL_SECONDS = 0.1
    pipeline = make_pipeline("flaky", "import sys\nsys.exit(1)\n")
    channel_create(name="hangs", url=hanging_endpoint)
    channel_create(name="refuses", url=f"json://127.0.0.1:{free_port()}/x")

    with ThreadEngine():
        failed = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: PipelineRun.objects.get(id=failed.id).is_terminal, timeout=30)
        hung = NotificationDelivery.objects.filter(event__run_id=failed.id, target_label="hangs")
        wait_for(lambda: hung.filter(status=DeliveryStatus.SENDING).exists(), timeout=30)
        # While the sender waits on the hanging target, another run starts and finishes.
        started = time.monotonic()
        nxt = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: PipelineRun.objects.get(id=nxt.id).is_terminal, timeout=30)
        next_run_seconds = time.monotonic() - started
        still_sending = hung.filter(status=DeliveryStatus.SENDING).exists()
        wait_for(
            lambda: (
                NotificationDelivery.objects.filter(
                    event__run_id=failed.id, status=DeliveryStatus.FAILED
                ).count()
                == 2
            ),
            timeout=60,
            what="both deliveries to give up after 3 attempts",
        )

    assert still_sending, "the run should have finished while the hanging send was still waiting"
    assert next_run_seconds < settings.FASTFLOW_NOTIFY_TIMEOUT_SECONDS, next_run_seconds
    for delivery in NotificationDelivery.objects.filter(event__run_id=failed.id):
        attempts = list(delivery.attempt_rows.order_by("number"))
        assert [a.number for a in attempts] == [1, 2, 3]
        assert not any(a.ok for a in attempts)
        assert all(a.error for a in attempts)
        assert delivery.last_error == attempts[-1].error
        # Backoff: each retry waited at least the base delay, doubled each time.
        gaps = [
            (b.started_at - a.finished_at).total_seconds()
            for a, b in zip(attempts, attempts[1:], strict=False)
        ]
        assert gaps[0] >= 0.45 and gaps[1] >= 0.95, gaps
    hung = NotificationDelivery.objects.get(event__run_id=failed.id, target_label="hangs")
    assert all(4.5 <= a.duration < 15 for a in hung.attempt_rows.all())  # the timeout held
    refused = NotificationDelivery.objects.get(event__run_id=failed.id, target_label="refuses")
    assert "Connection refused" in refused.last_error
