"""Waking the engines the moment there is work, instead of at their next poll.

The sending half, called by the services (`run_enqueue`, `run_cancel`) after their transaction
commits; the engine's receiving half is `runs_app/engine/listen.py`. Two channels, chosen by
the database, because the database is the only thing web and engine are sure to share:

- PostgreSQL: `NOTIFY fastflow_runs, '<reason>'` — every engine LISTENing on any host hears it.
- SQLite (web and engines on one host by necessity): every engine owns a FIFO in
  `<data dir>/wakeup/`; the sender writes one byte into each. Opening a FIFO that no process
  reads fails at once (ENXIO) and a full one refuses the byte (EAGAIN): neither blocks.

A wake-up is only a hint: it never carries a run, it can be lost (no engine listening, a
listener reconnecting), and the engines keep polling (`FASTFLOW_DISPATCH_POLL_SECONDS`) as
the fallback. Sending never raises: a failed wake-up must not fail the enqueue that committed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction

logger = logging.getLogger(__name__)

CHANNEL = "fastflow_runs"
WAKE_RUN = "run"  # a run was queued: claim
WAKE_CANCEL = "cancel"  # a cancel was requested: check cancellations
REASONS = (WAKE_RUN, WAKE_CANCEL)
FIFO_SUFFIX = ".fifo"


def wakeup_dir() -> Path:
    return Path(settings.DATA_DIR) / "wakeup"


def engines_wake(*, reason: str) -> None:
    """Wake the engines once the current transaction (if any) has committed: before that they
    could not see the row the wake-up is about."""
    if reason not in REASONS:
        raise ValueError(f"unknown wake-up reason {reason!r}")
    transaction.on_commit(lambda: _send(reason), robust=True)


def _send(reason: str) -> None:
    if connection.vendor == "postgresql":
        _notify(reason)
    else:
        fifos_poke(wakeup_dir(), reason.encode()[:1])


def _notify(reason: str) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, reason])
    except DatabaseError as exc:
        logger.debug("engine wake-up not sent (%s); the engines' poll picks the run up", exc)


def fifos_poke(directory: Path, byte: bytes) -> int:
    """Write `byte` into every engine FIFO in `directory` without ever blocking; returns how
    many engines were reached."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0  # no engine ever ran with this data dir
    reached = 0
    for entry in entries:
        if not entry.name.endswith(FIFO_SUFFIX):
            continue
        try:
            fd = os.open(entry.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # ENXIO: nobody reads it (its engine is gone); ENOENT: just removed
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, byte)
                reached += 1
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                reached += 1  # full: that engine has wake-ups waiting already
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return reached
