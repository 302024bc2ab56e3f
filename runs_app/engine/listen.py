"""The engine's ear for wake-ups (`runs_app/wakeup.py` sends them): a thread that calls
`on_wake(reason)` the moment a run is queued or a cancel requested, so the main loop claims
at once instead of at its next poll.

PostgreSQL: a dedicated connection (outside the pool: LISTEN belongs to one session) that
LISTENs on the channel; it is re-opened after a database outage, and every reconnect counts as
a wake-up, since notifications sent meanwhile are lost. SQLite: a FIFO in the data dir that
this engine alone reads. While the listener is not `healthy` (connecting, the database down, a
data dir where no FIFO can be made) the engine polls at the fast fallback pace instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connections

from fastflow_site.datadir import PRIVATE_FILE, private_dir
from runs_app.wakeup import CHANNEL, FIFO_SUFFIX, REASONS, WAKE_CANCEL, WAKE_RUN, wakeup_dir

logger = logging.getLogger(__name__)

RECONNECT_PAUSE_SECONDS = (0.5, 1.0, 2.0, 5.0)
# A silently dead LISTEN connection (a dropped network path) is noticed within this time.
LIVENESS_CHECK_SECONDS = 30.0
WAIT_SECONDS = 1.0
WAKE_ALL = (WAKE_RUN, WAKE_CANCEL)

OnWake = Callable[[str], None]


class Listener(threading.Thread):
    """Base: a daemon thread; `healthy` while wake-ups can reach this engine."""

    def __init__(self, *, name: str, on_wake: OnWake) -> None:
        super().__init__(name=name, daemon=True)
        self.on_wake = on_wake
        self.stopped = threading.Event()
        self.healthy = False

    def stop(self) -> None:
        self.stopped.set()

    def _wake(self, reasons: tuple[str, ...] | list[str]) -> None:
        for reason in dict.fromkeys(reasons):
            try:
                self.on_wake(reason)
            except Exception:  # noqa: BLE001 - a wake-up is a hint; never end the thread
                logger.exception("handling wake-up %r failed", reason)


class PostgresListener(Listener):
    def __init__(self, *, on_wake: OnWake) -> None:
        super().__init__(name="listen", on_wake=on_wake)
        self._connection = None

    def run(self) -> None:
        import psycopg

        failures = 0
        while not self.stopped.is_set():
            try:
                self._listen(psycopg)
                failures = 0
            except psycopg.Error as exc:
                if self.healthy or failures == 0:
                    logger.warning("wake-ups unavailable (%s); polling until reconnected", exc)
                self.healthy = False
                pause = RECONNECT_PAUSE_SECONDS[min(failures, len(RECONNECT_PAUSE_SECONDS) - 1)]
                failures += 1
                self.stopped.wait(pause)
            finally:
                self._close()

    def _listen(self, psycopg: object) -> None:
        params = connections["default"].get_connection_params()
        params["application_name"] = "runscheduler-listen"
        params["autocommit"] = True
        self._connection = psycopg.connect(**params)
        self._connection.execute(f"LISTEN {CHANNEL}")
        self.healthy = True
        logger.info("listening for wake-ups on PostgreSQL channel %s", CHANNEL)
        # Anything queued while we were not listening (start, reconnect) is claimed now.
        self._wake(WAKE_ALL)
        checked = time.monotonic()
        while not self.stopped.is_set():
            reasons = [
                n.payload
                for n in self._connection.notifies(timeout=WAIT_SECONDS)
                if n.payload in REASONS
            ]
            self._wake(reasons)
            if time.monotonic() - checked >= LIVENESS_CHECK_SECONDS:
                self._connection.execute("SELECT 1")
                checked = time.monotonic()

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class FifoListener(Listener):
    """Reads the one-byte wake-ups senders write into this engine's FIFO."""

    def __init__(self, *, engine_id: str, on_wake: OnWake, directory: Path | None = None) -> None:
        super().__init__(name="listen", on_wake=on_wake)
        self.directory = directory or wakeup_dir()
        self.path = self.directory / (re.sub(r"[^A-Za-z0-9_.-]", "_", engine_id) + FIFO_SUFFIX)
        self._fds: tuple[int, int] | None = None
        self._stop_pipe = os.pipe()

    def open(self) -> bool:
        """Create the FIFO (before the thread starts); False, with a warning, if it cannot be."""
        try:
            private_dir(self.directory)  # 0700 like the data dir: only our user may wake us
            fifos_sweep(self.directory)
            draft = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                draft.unlink()
            os.mkfifo(draft, PRIVATE_FILE)
            # Open for reading before the FIFO gets its name, so a sender never finds it
            # without a reader; our own write end keeps it from reporting end-of-file when the
            # senders close theirs.
            read_fd = os.open(draft, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            write_fd = os.open(draft, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.replace(draft, self.path)
        except OSError as exc:
            logger.warning("no wake-up FIFO in %s (%s); polling instead", self.directory, exc)
            return False
        self._fds = (read_fd, write_fd)
        self.healthy = True
        logger.info("listening for wake-ups on %s", self.path)
        return True

    def run(self) -> None:
        if self._fds is None:
            return
        read_fd = self._fds[0]
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        poller.register(self._stop_pipe[0], select.POLLIN)
        while not self.stopped.is_set():
            if not poller.poll(WAIT_SECONDS * 1000):
                continue
            try:
                data = os.read(read_fd, 4096)
            except BlockingIOError:
                continue
            self._wake([r for r in WAKE_ALL if r.encode()[:1] in data])
        self._close()
        for fd in self._stop_pipe:
            with contextlib.suppress(OSError):
                os.close(fd)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(OSError):
            os.write(self._stop_pipe[1], b"x")
        if not self.is_alive():
            self._close()

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        fds, self._fds = self._fds, None
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.healthy = False


def fifos_sweep(directory: Path) -> int:
    """Remove FIFOs nobody reads any more (engines that died without removing theirs)."""
    removed = 0
    for path in directory.glob(f"*{FIFO_SUFFIX}"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader: its engine is gone
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
            continue
        os.close(fd)
    return removed


def listener_for(*, engine_id: str, on_wake: OnWake) -> Listener | None:
    """The listener for this database, opened and ready to start; None if there is none."""
    vendor = connections["default"].vendor
    if vendor == "postgresql":
        return PostgresListener(on_wake=on_wake)
    listener = FifoListener(engine_id=engine_id, on_wake=on_wake)
    return listener if listener.open() else None
