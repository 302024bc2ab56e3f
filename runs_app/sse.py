"""Server-sent events for a run's log: what is in the file, then new lines until the run ends.

Each log line is one event whose `id` is the byte offset just after it, so a client that
reconnects (EventSource does so by itself) sends `Last-Event-ID` and continues where it left off.
The stream ends with `event: end` once the run is terminal and the file is drained.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

from django.db import DatabaseError, connection

from runs_app.models import TERMINAL_STATUSES, PipelineRun
from runs_app.run_output import log_read, log_rest

POLL_SECONDS = 0.25
# The file is cheap to poll; the database is asked about the status at most this often.
STATUS_POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
# A stream holds a web worker; after this long it closes without `end` and the client resumes.
MAX_STREAM_SECONDS = 3600.0


def _event(data: str, *, event: str | None = None, event_id: int | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    head += f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {data}\n\n"


def _line_events(data: bytes, offset: int) -> Iterator[str]:
    for raw in data.splitlines(keepends=True):
        offset += len(raw)
        # SSE treats CR as a line break too, so it cannot appear inside a data field.
        text = raw.rstrip(b"\n").decode("utf-8", errors="replace").replace("\r", "")
        yield _event(text, event_id=offset)


def _refresh(run: PipelineRun) -> bool:
    """Reload status and log path with one small query; False if the run was deleted."""
    try:
        row = (
            PipelineRun.objects.filter(id=run.id)
            .values_list("status", "log_file", "output_archived_at")
            .first()
        )
    except DatabaseError:
        # A dropped connection must not be reused by the next request on this worker; the
        # client reconnects with Last-Event-ID, so ending the stream loses nothing.
        if not connection.in_atomic_block:
            connection.close()
        raise
    if row is None:
        return False
    run.status, run.log_file, run.output_archived_at = row
    return True


def log_events(
    *, run: PipelineRun, offset: int = 0, still_allowed: Callable[[], bool] | None = None
) -> Iterator[str]:
    """The SSE body: existing lines, then new ones, then `event: end`.

    1. Read whole lines from `offset` and send them as they come, without sleeping.
    2. When nothing is new, re-check the run in the database (a fresh query each poll).
    3. Once the run is terminal, drain the file (lines written just before the status
       changed), flush a last unterminated line, send `end` and stop.
    """
    started = last_sent = time.monotonic()
    checked = 0.0
    exists, draining = True, False
    yield ": stream of run log\n\n"
    while True:
        data, next_offset = log_read(run=run, offset=offset)
        if data:
            yield from _line_events(data, offset)
            offset = next_offset
            last_sent = time.monotonic()
            continue
        if time.monotonic() - checked >= STATUS_POLL_SECONDS:
            # A stream can outlive its authorisation: a revoked token or a blocked user ends it.
            if still_allowed is not None and not still_allowed():
                yield _event(json.dumps({"detail": "access revoked"}), event="error")
                return
            exists = _refresh(run)
            checked = time.monotonic()
        if not exists or run.status in TERMINAL_STATUSES:
            if not draining:
                # Lines written just before the status changed: one more pass of the reader.
                draining = True
                continue
            # log_read holds back an unterminated last line; the run is over, so send it too.
            tail = log_rest(run=run, offset=offset)
            yield from _line_events(tail, offset)
            offset += len(tail)
            status = run.status if exists else "DELETED"
            yield _event(json.dumps({"status": status, "offset": offset}), event="end")
            return
        now = time.monotonic()
        if now - started > MAX_STREAM_SECONDS:
            return
        if now - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = now
        time.sleep(POLL_SECONDS)
