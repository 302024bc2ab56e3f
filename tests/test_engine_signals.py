"""`runscheduler`'s SIGTERM/SIGINT handler: it may interrupt the main thread anywhere, so it
takes no lock that thread could hold."""

from __future__ import annotations

import signal
import threading
from io import StringIO

import pytest

from runs_app.engine.executors import get_executor
from runs_app.engine.loop import Engine
from runs_app.management.commands.runscheduler import Command

pytestmark = pytest.mark.django_db


@pytest.fixture
def command():
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    command = Command(stdout=StringIO())
    command.shutdown = False
    command.engine = None
    command.install_signal_handlers()
    yield command
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_a_signal_arriving_while_the_wakeup_lock_is_held_still_stops_the_engine(command):
    command.engine = Engine(executor=get_executor("local"), schedules=False)
    wakeup = command.engine.dispatcher.wakeup
    returned = threading.Event()

    def interrupted_inside_the_event() -> None:
        # Where the main thread may be when the signal comes: inside Event.wait's lock.
        with wakeup._cond:
            command.on_signal(signal.SIGTERM, None)
            returned.set()

    thread = threading.Thread(target=interrupted_inside_the_event, daemon=True)
    thread.start()
    thread.join(5)
    assert returned.is_set(), "the handler blocked on a lock the interrupted thread holds"
    assert command.shutdown is True
    assert wakeup.wait(5), "the engine was never woken to finish"
    # The relay thread says so before it wakes the engine.
    assert "terminate, finishing..." in command.stdout._out.getvalue()
