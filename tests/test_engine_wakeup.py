"""Engines are woken the moment a run is queued or a cancel requested (PostgreSQL NOTIFY, a
FIFO per engine on SQLite); the poll is only the fallback. Real engines, real databases, real
FIFOs: with the poll set to a minute, a queued run still starts at once, while a row written
behind the services' back (no wake-up) waits for the poll."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from runs_app.engine.listen import FifoListener, PostgresListener, fifos_sweep
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_cancel, run_claim_next, run_enqueue
from runs_app.wakeup import WAKE_CANCEL, WAKE_RUN, fifos_poke, wakeup_dir
from tests.helpers_engine import EngineProcess, make_pipeline, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LONG_POLL = "60"  # seconds: anything that starts sooner was woken


def listening(engine: EngineProcess) -> bool:
    engine.assert_alive()
    return "listening for wake-ups on" in engine.read_output()


def status_of(run: PipelineRun) -> str:
    return PipelineRun.objects.values_list("status", flat=True).get(id=run.id)


@contextlib.contextmanager
def idle_engine(name: str, **env: str) -> Iterator[EngineProcess]:
    """A real engine, listening, idle, its next poll a minute away."""
    with EngineProcess(name, FASTFLOW_DISPATCH_POLL_SECONDS=LONG_POLL, **env) as engine:
        engine.wait_registered()
        wait_for(lambda: listening(engine), timeout=30, what="the engine to listen for wake-ups")
        time.sleep(1.0)  # the claim pass every (re)connected listener triggers is over
        yield engine


def test_a_queued_run_starts_at_once_although_the_poll_is_a_minute_away():
    pipeline = make_pipeline("woken")
    with idle_engine("woken") as engine:
        # Control: a row created without run_enqueue sends no wake-up, so it waits for the poll.
        unannounced = PipelineRun.objects.create(pipeline=pipeline, triggered_by="manual")
        time.sleep(3.0)
        assert status_of(unannounced) == RunStatus.PENDING

        announced = run_enqueue(pipeline=pipeline, triggered_by="manual")

        # Both are claimed by the pass the wake-up triggers, long before the next poll.
        for run in (announced, unannounced):
            wait_for(
                lambda run=run: status_of(run) == RunStatus.SUCCESS,
                timeout=25,
                what=f"run {run.id} to be woken into running",
            )
        engine.assert_alive()
    assert "Traceback" not in engine.read_output(), engine.read_output()


def test_every_run_of_a_burst_is_woken_and_runs():
    pipeline = make_pipeline("burst")
    with idle_engine("burst", FASTFLOW_MAX_CONCURRENT_RUNS="3") as engine:
        runs = [run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(12)]
        wait_for(
            lambda: PipelineRun.objects.filter(status=RunStatus.SUCCESS).count() == len(runs),
            timeout=50,
            interval=0.2,
            what="the burst to drain without waiting for the poll",
        )
        engine.assert_alive()


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the FIFO is SQLite's"
)
def test_without_a_wake_up_fifo_the_engine_polls_fast_instead():
    # A data dir where no FIFO can be made (here: a file where its folder belongs).
    wakeup_dir().parent.mkdir(parents=True, exist_ok=True)
    wakeup_dir().write_text("not a folder")
    pipeline = make_pipeline("fallback")
    with EngineProcess("fallback", FASTFLOW_DISPATCH_POLL_SECONDS=LONG_POLL) as engine:
        engine.wait_registered()
        wait_for(lambda: "polling instead" in engine.read_output(), what="the warning")
        time.sleep(1.0)
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: status_of(run) == RunStatus.SUCCESS, timeout=25, what="the run")


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="LISTEN is PostgreSQL's"
)
def test_the_engine_listens_again_after_its_listen_connection_was_killed():
    pipeline = make_pipeline("relisten")
    with idle_engine("relisten") as engine:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'runscheduler-listen' AND datname = current_database()"
            )
            assert cursor.fetchone() is not None
        wait_for(
            lambda: engine.read_output().count("listening for wake-ups on") >= 2,
            timeout=30,
            what="the listener to reconnect",
        )
        time.sleep(1.0)
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        wait_for(lambda: status_of(run) == RunStatus.SUCCESS, timeout=25, what="the run")
        assert "wake-ups unavailable" in engine.read_output()


# --- The two halves on their own: what a listener hears, what a sender never does -------------


class Heard:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()

    def wait_for(self, reason: str) -> None:
        wait_for(lambda: reason in self.reasons, timeout=20, what=f"wake-up {reason!r}")


@pytest.fixture
def listener():
    heard = Heard()
    if connection.vendor == "postgresql":
        thread = PostgresListener(on_wake=heard)
    else:
        thread = FifoListener(engine_id="test:1:ns.abc", on_wake=heard)
        assert thread.open()
    thread.start()
    wait_for(lambda: thread.healthy, what="the listener")
    time.sleep(0.2)
    heard.reasons.clear()
    yield heard
    thread.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_the_listener_hears_a_queued_run_and_a_cancel_request(listener):
    pipeline = make_pipeline("heard")

    queued = run_enqueue(pipeline=pipeline, triggered_by="manual")
    listener.wait_for(WAKE_RUN)
    assert WAKE_CANCEL not in listener.reasons

    running = run_claim_next(engine_id="test-engine")
    assert running is not None and running.id == queued.id
    listener.reasons.clear()
    run_cancel(run=running)
    listener.wait_for(WAKE_CANCEL)
    assert WAKE_RUN not in listener.reasons


def test_a_run_queued_for_later_wakes_nobody(listener):
    from datetime import timedelta

    from django.utils import timezone

    pipeline = make_pipeline("later")
    run_enqueue(
        pipeline=pipeline, triggered_by="retry", not_before=timezone.now() + timedelta(hours=1)
    )
    time.sleep(1.0)
    assert listener.reasons == []


def test_a_sender_never_blocks_on_fifos_nobody_reads_or_that_are_full(tmp_path):
    directory = tmp_path / "wakeup"
    directory.mkdir()
    os.mkfifo(directory / "gone-engine.fifo")  # its engine died: no reader
    full = directory / "busy-engine.fifo"
    os.mkfifo(full)
    reader = os.open(full, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    writer = os.open(full, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:  # fill the pipe to its capacity
            os.write(writer, b"x" * 4096)
    except BlockingIOError:
        pass
    (directory / "plain.fifo").write_bytes(b"")  # not a FIFO: never written to
    try:
        started = time.monotonic()
        reached = fifos_poke(directory, b"r")
        elapsed = time.monotonic() - started
    finally:
        os.close(writer)
        os.close(reader)
    assert reached == 1  # the full one (it has wake-ups waiting), not the dead one
    assert elapsed < 5  # generous: it must not block (a blocking open would hang forever)
    assert (directory / "plain.fifo").read_bytes() == b""
    assert fifos_poke(tmp_path / "no-such-dir", b"r") == 0


def test_a_dead_engines_fifo_is_swept_and_a_live_ones_kept(tmp_path):
    directory = tmp_path / "wakeup"
    heard = Heard()
    live = FifoListener(engine_id="live", on_wake=heard, directory=directory)
    assert live.open()
    os.mkfifo(directory / "dead.fifo")

    assert fifos_sweep(directory) == 1
    assert sorted(p.name for p in directory.iterdir()) == ["live.fifo"]
    live.start()
    assert fifos_poke(directory, b"c") == 1
    heard.wait_for(WAKE_CANCEL)
    live.stop()
    live.join(10)
    assert not (directory / "live.fifo").exists()


def test_enqueue_works_with_no_engine_listening():
    pipeline = make_pipeline("alone")
    if connection.vendor == "sqlite":
        directory = Path(settings.DATA_DIR) / "wakeup"
        directory.mkdir()
        os.mkfifo(directory / "left-over.fifo")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    assert status_of(run) == RunStatus.PENDING


def test_an_engines_fifo_is_private_to_its_user_whatever_the_umask(tmp_path):
    """Only the user Fast-Flow runs as may wake an engine (docs/security.md): the folder is
    0700 and the FIFO 0600 like the rest of the data dir, even under a permissive umask."""
    previous = os.umask(0o002)
    try:
        engine = FifoListener(engine_id="private", on_wake=Heard(), directory=tmp_path / "wakeup")
        assert engine.open()
    finally:
        os.umask(previous)
    try:
        assert (tmp_path / "wakeup").stat().st_mode & 0o777 == 0o700
        assert engine.path.stat().st_mode & 0o777 == 0o600
    finally:
        engine.stop()
    assert not engine.path.exists()
