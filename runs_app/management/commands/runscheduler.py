"""`manage.py runscheduler`: the engine. Run one or more (any host sharing the database).

SIGTERM / SIGINT finish the loop gracefully: docker runs keep running and the next engine
re-attaches them; local runs are stopped and failed with the reason.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from runs_app.engine.loop import Engine

logger = logging.getLogger("runs_app.engine")

ERROR_PAUSE_SECONDS = 1.0
# Threads besides the run workers that use the database: the main loop, heartbeat, reconcile,
# notifications, retention, leader chores, cache warmer, APScheduler's loop and its 4 job
# threads, with run storage `s3` the output shipper and archiver, and some headroom. (The
# wake-up listener has a connection of its own, outside the pool.)
ENGINE_THREADS = 16


class Command(BaseCommand):
    help = "Run the Fast-Flow engine: dispatch runs, fire schedules, reconcile, heartbeat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--executor",
            choices=("docker", "local"),
            default=None,
            help="Override FASTFLOW_EXECUTOR for this engine.",
        )
        parser.add_argument(
            "--slots",
            type=int,
            default=None,
            help=(
                "Runs this engine drives at once (default FASTFLOW_MAX_CONCURRENT_RUNS, which "
                "stays the limit for all engines together)."
            ),
        )
        parser.add_argument(
            "--no-schedules",
            action="store_true",
            help="Never become the scheduler leader (dispatch only).",
        )

    def say(self, message: str) -> None:
        """Progress for the operator: a plain line, or a log record when logs are JSON (so
        every line of the engine's output parses)."""
        if settings.FASTFLOW_LOG_FORMAT == "json":
            logger.info(message)
        else:
            self.stdout.write(message)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Only what is safe in a signal handler: a flag and a byte to a pipe. The handler runs
        in the main thread between two bytecodes, maybe while that thread holds the lock of the
        engine's wake-up event (in `Event.wait`) or of stdout: waking the engine or printing
        from here took the same lock again and hung the engine for good (seen in a benchmark's
        SIGTERM). The `signals` thread does both."""
        self.shutdown = True
        os.write(self._signal_pipe[1], bytes([signum]))

    def install_signal_handlers(self) -> None:
        self._signal_pipe = os.pipe()
        threading.Thread(target=self._relay_signals, name="signals", daemon=True).start()
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def _relay_signals(self) -> None:
        while True:
            data = os.read(self._signal_pipe[0], 1)
            if not data:
                return
            signum = data[0]
            desc = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminate"}.get(signum, signum)
            self.say(f"{desc}, finishing...")
            if self.engine is not None:
                self.engine.wake()

    def handle(self, *args: object, **options: object) -> str:
        from runs_app.engine.executors import get_executor

        self.shutdown = False
        self.engine: Engine | None = None
        self.install_signal_handlers()
        slots = options["slots"]
        if slots is not None and slots < 1:
            raise CommandError(f"--slots must be at least 1, got {slots}")
        if connection.vendor == "postgresql":
            db_options = settings.DATABASES["default"].setdefault("OPTIONS", {})
            db_options["application_name"] = "runscheduler"
            pool = db_options.get("pool")
            if isinstance(pool, dict):
                # Each run's worker may hold a connection at once, besides the engine's own
                # threads: a smaller pool would make runs wait for connections.
                needed = (slots or settings.FASTFLOW_MAX_CONCURRENT_RUNS) + ENGINE_THREADS
                pool["max_size"] = max(pool["max_size"], needed)
        executor = get_executor(options["executor"])
        self.engine = Engine(executor=executor, schedules=not options["no_schedules"], slots=slots)
        self.engine.start()
        self.say(f"runscheduler {self.engine.engine_id} ({executor.name}) started")
        left: set[str] = set()
        try:
            while not self.shutdown:
                try:
                    self.engine.step()
                except Exception:  # noqa: BLE001 - the loop must survive anything one step does
                    logger.exception("engine step failed; continuing")
                    connection.close()
                    time.sleep(ERROR_PAUSE_SECONDS)
                    continue
                self.engine.wait()
        finally:
            left = self.engine.stop()
        if left:
            # Worker threads are still following containers that keep running (the next engine
            # re-attaches them); waiting for those threads would mean waiting for the runs.
            self.say(f"Done; {len(left)} run(s) left running for the next engine.")
            self.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(0)
        self.say("Done.")
        return ""
