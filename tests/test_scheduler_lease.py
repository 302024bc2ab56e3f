"""The scheduler lease on its own: with two real `runscheduler` processes, exactly one leads and
runs APScheduler, and the other takes over only once the dead leader's lease expired.

The multi-engine tests count runs, which the ticks' idempotency keys deduplicate: a broken
lease (both engines firing every tick) would still give one run per tick there. Here every
fire attempt is counted in each engine's own output, so a second scheduler cannot hide.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django_apscheduler.models import DjangoJob

from runs_app.engine.lease import SCHEDULER_LEASE
from runs_app.models import TERMINAL_STATUSES, EngineLease, PipelineRun
from runs_app.schedule_services import scheduledjob_create, scheduledjob_update
from tests.helpers_engine import EngineProcess, lease_holder, make_pipeline, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LEADS = re.compile(r"^(\S+ \S+) INFO \S+: engine (\S+) is the scheduler leader$", re.M)
SCHEDULER_STARTED = "scheduler started (this engine leads)"
# One line per APScheduler fire attempt, even when the tick's run already existed.
FIRED = re.compile(r"schedule \S+ \(.*\) queued run (\S+) for (\S+)$", re.M)


def leader_lines(engine: EngineProcess) -> list[tuple[datetime, str]]:
    """(when, engine id) of each time the engine became the scheduler leader."""
    found = []
    for stamp, engine_id in LEADS.findall(engine.read_output()):
        # logging's asctime: local time, milliseconds after a comma.
        local = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        found.append((local.astimezone(UTC), engine_id))
    return found


def runs_finished() -> bool:
    return not PipelineRun.objects.exclude(status__in=TERMINAL_STATUSES).exists()


def fire_attempts(engine: EngineProcess) -> list[datetime]:
    """The ticks this engine's APScheduler fired."""
    return [datetime.fromisoformat(tick) for _run, tick in FIRED.findall(engine.read_output())]


def test_one_engine_leads_and_fires_and_the_other_takes_over_only_after_expiry():
    pipeline = make_pipeline("ticker", "print('tick')\n")
    first, second = EngineProcess("first"), EngineProcess("second")
    with first, second:
        first_id = first.wait_registered()
        second_id = second.wait_registered()
        leader_id = wait_for(lambda: lease_holder(name=SCHEDULER_LEASE), what="a leader")
        leader, follower = (first, second) if leader_id == first_id else (second, first)
        follower_id = second_id if leader is first else first_id

        def all_fire_attempts() -> list[datetime]:
            return fire_attempts(leader) + fire_attempts(follower)

        job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="1")
        # Several lease renewal rounds (every 2 s) while both engines are up.
        for ticks in (2, 4, 6):
            wait_for(lambda n=ticks: len(all_fire_attempts()) >= n, timeout=60, what="ticks")
            assert lease_holder(name=SCHEDULER_LEASE) == leader_id
        leader.assert_alive()
        follower.assert_alive()

        # Only the leader became leader, started APScheduler and fired; every tick once.
        assert [who for _, who in leader_lines(leader)] == [leader_id]
        assert leader_lines(follower) == []
        assert leader.read_output().count(SCHEDULER_STARTED) == 1
        assert SCHEDULER_STARTED not in follower.read_output()
        assert fire_attempts(follower) == []

        # Pause the schedule, so that no tick is half-fired when the leader dies.
        scheduledjob_update(job=job, enabled=False)
        wait_for(lambda: not DjangoJob.objects.exists(), timeout=30, what="the job removed")
        wait_for(runs_finished, timeout=60, what="the runs to finish")

        # The leader dies without releasing the lease: the follower waits for it to expire.
        leader.kill()
        expired_at = EngineLease.objects.get(name=SCHEDULER_LEASE).expires_at
        wait_for(
            lambda: lease_holder(name=SCHEDULER_LEASE) == follower_id,
            timeout=60,
            interval=0.2,
            what="the follower to take the lease over",
        )
        wait_for(lambda: leader_lines(follower), timeout=30, what="the follower's leader line")
        (took_over_at, who), *again = leader_lines(follower)
        assert who == follower_id and again == []
        # It became leader only after the dead leader's lease ran out (same host clock; the
        # log time is cut to milliseconds).
        assert took_over_at >= expired_at - timedelta(milliseconds=1)

        # The new leader runs APScheduler: its own fire attempts.
        scheduledjob_update(job=job, enabled=True)
        wait_for(lambda: len(fire_attempts(follower)) >= 3, timeout=60, what="new ticks")
        scheduledjob_update(job=job, enabled=False)
        wait_for(lambda: not DjangoJob.objects.exists(), timeout=30, what="the job removed")
        wait_for(runs_finished, timeout=60, what="the runs to finish")
        follower.assert_alive()

    before, after = fire_attempts(leader), fire_attempts(follower)
    assert follower.read_output().count(SCHEDULER_STARTED) == 1
    assert len(before) == len(set(before)) and len(after) == len(set(after))
    assert max(before) < min(after)
    # One run per fire attempt: no tick needed the idempotency key to be deduplicated.
    keys = list(PipelineRun.objects.values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys)) == len(before) + len(after)
    for engine in (first, second):
        assert "Traceback" not in engine.read_output(), engine.read_output()
