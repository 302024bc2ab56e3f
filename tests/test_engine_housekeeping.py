"""Engine bookkeeping: heartbeat row, leader lease, the leader's re-sync / warm-up / purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts_app.models import ApiToken, User
from accounts_app.services import token_issue
from pipelines_app.models import Pipeline
from runs_app.engine.executors import get_executor
from runs_app.engine.housekeeping import LeaderChores
from runs_app.engine.lease import lease_acquire, lease_release
from runs_app.engine.warmup import CacheWarmer
from runs_app.models import EngineInstance, ScheduledJob
from tests.conftest import write_pipeline
from tests.helpers_engine import ThreadEngine, lease_holder, wait_for


@pytest.mark.django_db(transaction=True)
def test_the_engine_keeps_a_heartbeat_row_while_it_runs(settings):
    settings.FASTFLOW_HEARTBEAT_STALE_SECONDS = 2  # heartbeat every 0.5 s

    with ThreadEngine() as engine:
        row = EngineInstance.objects.get(id=engine.engine_id)
        assert row.executor == "local"
        wait_for(
            lambda: EngineInstance.objects.get(id=engine.engine_id).heartbeat_at > row.heartbeat_at,
            timeout=10,
            what="a heartbeat",
        )

    assert not EngineInstance.objects.filter(id=engine.engine_id).exists()


@pytest.mark.django_db
def test_a_lease_has_one_holder_until_it_expires_or_is_released():
    assert lease_acquire(name="scheduler", holder="a")
    assert not lease_acquire(name="scheduler", holder="b")
    assert lease_acquire(name="scheduler", holder="a")  # renewal
    assert lease_holder(name="scheduler") == "a"

    lease_release(name="scheduler", holder="b")  # not b's to release
    assert lease_holder(name="scheduler") == "a"

    assert lease_acquire(name="scheduler", holder="a", seconds=-1)  # as if a stopped renewing
    assert lease_acquire(name="scheduler", holder="b")
    lease_release(name="scheduler", holder="b")
    assert lease_holder(name="scheduler") is None


@pytest.mark.django_db(transaction=True)
def test_leader_chores_sync_pipelines_schedules_and_warm_new_requirements(pipelines_dir):
    write_pipeline(
        pipelines_dir,
        "with_reqs",
        pipeline_json={"schedule_interval_seconds": 300},
        requirements="# nothing to install yet\n",
    )
    write_pipeline(pipelines_dir, "plain")
    warmer = CacheWarmer(get_executor("local"))
    warmer.start()
    changed = []
    try:
        LeaderChores(warmer=warmer, on_schedules_changed=lambda: changed.append(1)).sync()

        assert set(Pipeline.objects.values_list("pipeline_name", flat=True)) == {
            "with_reqs",
            "plain",
        }
        assert ScheduledJob.objects.get(pipeline_id="with_reqs").trigger_value == "300"
        assert changed
        warmed = wait_for(
            lambda: Pipeline.objects.filter(
                pipeline_name="with_reqs", last_cache_warmup__isnull=False
            ).first(),
            timeout=120,
            what="the warm-up",
        )
        assert warmed.cache_warmup_error == ""
        assert Pipeline.objects.get(pipeline_name="plain").last_cache_warmup is None
    finally:
        warmer.stop()
        warmer.join(30)


@pytest.mark.django_db
def test_leader_chores_purge_expired_api_tokens():
    user = User.objects.create(username="ops", email="ops@example.com")
    fresh, _ = token_issue(user=user, days=1)
    old, _ = token_issue(user=user, days=1)
    ApiToken.objects.filter(id=old.id).update(expires_at=timezone.now() - timedelta(minutes=1))

    LeaderChores(warmer=None, on_schedules_changed=lambda: None).purge()

    assert list(ApiToken.objects.values_list("id", flat=True)) == [fresh.id]


class _RecordingWarmer:
    def __init__(self) -> None:
        self.requested: list[str] = []

    def request(self, names: list[str]) -> None:
        self.requested.extend(names)


@pytest.mark.django_db
def test_a_failed_warm_up_is_retried_by_a_new_leader_and_then_periodically(pipelines_dir):
    """A warm-up that failed (index unreachable, CA bundle missing) is not given up for good:
    after the operator fixes the network and restarts the engine, it is tried again."""
    from runs_app.engine import housekeeping

    write_pipeline(pipelines_dir, "with_reqs", requirements="requests\n")
    write_pipeline(pipelines_dir, "plain")
    LeaderChores(warmer=None, on_schedules_changed=lambda: None).sync()
    Pipeline.objects.filter(pipeline_name="with_reqs").update(
        cache_warmup_error="resolving requirements failed: invalid peer certificate"
    )

    warmer = _RecordingWarmer()
    chores = LeaderChores(warmer=warmer, on_schedules_changed=lambda: None)
    chores.sync()
    assert warmer.requested == ["with_reqs"]

    chores.sync()  # not again at every sync: it waits for the retry interval
    assert warmer.requested == ["with_reqs"]

    def age_the_last_attempts() -> None:
        for name, at in chores._warmup_retried.items():
            chores._warmup_retried[name] = at - housekeeping.WARMUP_RETRY_SECONDS - 1

    age_the_last_attempts()
    chores.sync()
    assert warmer.requested == ["with_reqs", "with_reqs"]

    Pipeline.objects.filter(pipeline_name="with_reqs").update(
        cache_warmup_error="", last_cache_warmup=timezone.now()
    )
    age_the_last_attempts()
    chores.sync()  # warm now: nothing to retry
    assert warmer.requested == ["with_reqs", "with_reqs"]


@pytest.mark.django_db
def test_a_standby_engine_does_not_attempt_an_insert_at_every_renewal():
    """A failing INSERT is an ERROR line in the PostgreSQL server log, every 2 s per standby
    engine: a held lease is answered without one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert lease_acquire(name="scheduler", holder="a")
    with CaptureQueriesContext(connection) as queries:
        assert not lease_acquire(name="scheduler", holder="b")
    assert not [q for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
    assert lease_holder(name="scheduler") == "a"


@pytest.mark.django_db
def test_an_engine_in_another_pid_namespace_on_the_same_host_name_is_not_declared_dead():
    """Two engine containers sharing the host's name (host networking) see different pids: a
    pid missing here must not make one engine take over the other's live runs."""
    import socket
    import subprocess

    from runs_app.engine.identity import engine_identity, live_engine_ids

    finished = subprocess.Popen(["true"])
    finished.wait()
    dead_pid = finished.pid  # no such process any more (in this namespace)
    host = socket.gethostname()
    namespace = engine_identity().rsplit(":", 1)[-1].split(".")[0]
    assert namespace, "this test needs /proc/self/ns/pid"
    here = f"{host}:{dead_pid}:{namespace}.deadbeef"
    elsewhere = f"{host}:{dead_pid}:{int(namespace, 16) + 1:x}.cafef00d"
    for engine_id in (here, elsewhere):
        EngineInstance.objects.create(id=engine_id, hostname=host, pid=dead_pid, executor="docker")

    live = live_engine_ids(me="me")

    assert here not in live  # same namespace, process gone: dead at once
    assert elsewhere in live  # another namespace: only its heartbeat can tell


@pytest.mark.django_db
def test_a_warm_up_in_progress_is_not_queued_again_at_every_sync(pipelines_dir):
    write_pipeline(pipelines_dir, "slow_reqs", requirements="requests\n")
    warmer = _RecordingWarmer()
    chores = LeaderChores(warmer=warmer, on_schedules_changed=lambda: None)

    chores.sync()
    chores.sync()  # the first warm-up has not finished yet (never warmed, no error)

    assert warmer.requested == ["slow_reqs"]
