"""Where a run's log and metrics are, and reading them back wherever they are (docs/storage.md).

A run's `log_file` / `metrics_file` say which of two places holds its output:

- an absolute path: a file in the data dir (FASTFLOW_RUN_STORAGE=local, the default, and every
  run written before s3 was configured). The engine writes it, the web process reads it from
  the same disk (`runs_app/logs.py`).
- a relative name (`logs/<pipeline>/<shard>/<run id>.log`, FASTFLOW_RUN_STORAGE=s3): the engine
  writes the file below its own data dir (its spool, never read by the web process) and copies
  new lines into the database as it goes (`output_chunks.py`); once the run has ended, the
  chunks become one object of that name in the store (`object_store.py`) and are deleted
  (`output_archived_at` is set). Offsets are the file's byte offsets in all three.

Every reader (API, SSE, admin, notifications) and every deleter (run delete, retention) goes
through here, so none of them cares which place it is.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs_app import logs
from runs_app.logs import DEFAULT_CHUNK, NOTE, log_line, run_log_file, run_metrics_file
from runs_app.models import TERMINAL_STATUSES, OutputStream, PipelineRun, RunOutputChunk
from runs_app.object_store import (
    object_delete,
    object_read,
    object_save,
    object_size,
    object_store_enabled,
)
from runs_app.output_chunks import (
    chunks_append_at_end,
    chunks_copy,
    chunks_delete,
    chunks_end,
    chunks_read,
)

logger = logging.getLogger(__name__)

LOG = OutputStream.LOG
METRICS = OutputStream.METRICS


def is_object_name(stored: str) -> bool:
    """A stored `log_file` / `metrics_file` naming an object-store run's output."""
    return bool(stored) and not os.path.isabs(stored)


def _stored(run: PipelineRun, stream: str) -> str:
    return run.log_file if stream == LOG else run.metrics_file


def output_names(run: PipelineRun) -> tuple[str, str]:
    """What a run records as its `log_file` and `metrics_file`: what it has, else where a new
    run's output goes (a path in the data dir, or with s3 the same path relative to it)."""
    log_file, metrics_file = run.log_file, run.metrics_file
    if not log_file:
        log_file = _new_name(run_log_file(run))
    if not metrics_file:
        metrics_file = _new_name(run_metrics_file(run))
    return log_file, metrics_file


def _new_name(path: Path) -> str:
    if object_store_enabled():
        return path.relative_to(settings.DATA_DIR).as_posix()
    return str(path)


def output_local_path(stored: str) -> Path:
    """The file this process writes for a stored name: the path itself, or for an object-store
    run the engine's spool below its own data dir."""
    return Path(settings.DATA_DIR) / stored if is_object_name(stored) else Path(stored)


# --- reading -----------------------------------------------------------------------------------


def _archived(run: PipelineRun) -> bool:
    """Whether the run's output is in the object store. A finished run still reading as live
    is checked again: its engine may have archived it (and deleted the chunks) just now."""
    if run.output_archived_at is None and run.is_terminal:
        run.output_archived_at = (
            PipelineRun.objects.filter(id=run.id).values_list("output_archived_at", flat=True)
        ).first()
    return run.output_archived_at is not None


def output_bytes(*, run: PipelineRun, stream: str, offset: int, limit: int = -1) -> bytes | None:
    """Bytes of the run's log or metrics from `offset` (at most `limit`, all with -1), or None
    when the run has none to read: no output recorded, or it is missing."""
    stored = _stored(run, stream)
    if not is_object_name(stored):
        path = logs.data_file(stored)
        if path is None:
            return None
        with path.open("rb") as fh:
            return logs.read_from(fh, offset, limit)
    if run.output_archived_at is None:
        data = chunks_read(run_id=run.id, stream=stream, offset=offset, limit=limit)
        if data or not _archived(run):
            return data
    try:
        return object_read(name=stored, offset=offset, limit=limit)
    except FileNotFoundError:
        return None


def output_size(*, run: PipelineRun, stream: str) -> int | None:
    """The size of the run's log or metrics so far; None when there is none (or it is missing)."""
    stored = _stored(run, stream)
    if not is_object_name(stored):
        path = logs.data_file(stored)
        return path.stat().st_size if path is not None else None
    if not _archived(run):
        return chunks_end(run_id=run.id, stream=stream)
    return object_size(name=stored)


def output_missing(*, run: PipelineRun, stream: str) -> bool:
    """A finished run whose recorded output is gone (deleted by hand, a lost volume, an object
    removed from the bucket): it must say so, not look like a run that printed nothing. A live
    run's output may not exist yet, and a finished one not yet archived is in the chunks."""
    stored = _stored(run, stream)
    if not stored or not run.is_terminal:
        return False
    if not is_object_name(stored):
        return logs.data_file(stored) is None
    return _archived(run) and object_size(name=stored) is None


def log_missing(*, run: PipelineRun) -> bool:
    return output_missing(run=run, stream=LOG)


def metrics_missing(*, run: PipelineRun) -> bool:
    return output_missing(run=run, stream=METRICS)


def log_available(*, run: PipelineRun) -> bool:
    """Whether there is a log to show or download (possibly still empty)."""
    return output_size(run=run, stream=LOG) is not None


def log_read(*, run: PipelineRun, offset: int = 0, limit: int = DEFAULT_CHUNK) -> tuple[bytes, int]:
    """Whole lines of the log from `offset` (at most `limit` bytes), and the offset to ask for
    next; a line longer than `limit` comes in pieces (see `logs.whole_lines`)."""
    offset = max(offset, 0)
    data = output_bytes(run=run, stream=LOG, offset=offset, limit=limit)
    if not data:
        return b"", offset
    data = logs.whole_lines(data, limit)
    return data, offset + len(data)


def log_rest(*, run: PipelineRun, offset: int) -> bytes:
    """Everything after `offset`, including a last line that never got its newline."""
    return output_bytes(run=run, stream=LOG, offset=max(offset, 0)) or b""


def log_open(*, run: PipelineRun) -> IO[bytes] | None:
    """The whole log as a file to send (a download), or None when there is none."""
    stored = run.log_file
    if not is_object_name(stored):
        path = logs.data_file(stored)
        return path.open("rb") if path is not None else None
    data = output_bytes(run=run, stream=LOG, offset=0)
    return io.BytesIO(data) if data is not None else None


def metrics_read(*, run: PipelineRun) -> list[dict]:
    """The run's metric samples; malformed lines (e.g. a half-written last line) are skipped."""
    data = output_bytes(run=run, stream=METRICS, offset=0)
    samples = []
    for line in (data or b"").splitlines():
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return samples


# --- writing after the end, archiving, deleting ------------------------------------------------


def log_append_notes(*, run: PipelineRun, notes: list[str]) -> None:
    """Append engine notes to a run's log (retries queued, downstream runs, the reason a run
    failed). Notes bypass the log size cap: they are few and explain the end of a run. A log
    that cannot be written is logged; it keeps what it had."""
    if not notes or not run.log_file:
        return
    data = b"".join(log_line(NOTE, datetime.now(UTC), note) for note in notes)
    if not is_object_name(run.log_file):
        logs.log_append_bytes(run=run, data=data)
        return
    if _archived(run):
        _object_append(run, data)
    elif not chunks_append_at_end(run_id=run.id, stream=LOG, data=data):
        logger.warning("run %s: could not append notes to its live log", run.id)


def _object_append(run: PipelineRun, data: bytes) -> None:
    """Objects cannot be appended to: the archived log is written again with the notes."""
    try:
        current = object_read(name=run.log_file)
    except FileNotFoundError:
        current = b""
    except Exception as exc:  # noqa: BLE001 - the store is remote: keep what it has
        logger.warning("run %s: cannot append notes to its archived log: %s", run.id, exc)
        return
    object_save(name=run.log_file, content=io.BytesIO(current + data))


def output_archive(*, run: PipelineRun) -> bool:
    """Move a finished object-store run's chunks into the object store: one object per stream,
    then `output_archived_at`, then the chunks are deleted. Safe to repeat and to race (the
    engine that ran it and another engine's sweep): each copy is checked against the chunks'
    end before and after, so a copy that saw chunks vanish or grow is not recorded. False when
    nothing was archived. Raises what the store raises (the chunks stay for the next try)."""
    run.refresh_from_db(fields=["status", "log_file", "metrics_file", "output_archived_at"])
    if not run.is_terminal or run.output_archived_at is not None:
        return False
    streams = [stream for stream in (LOG, METRICS) if is_object_name(_stored(run, stream))]
    sizes: dict[str, int] = {}
    for stream in streams:
        expected = chunks_end(run_id=run.id, stream=stream)
        with tempfile.TemporaryFile() as spool:
            sizes[stream] = chunks_copy(run_id=run.id, stream=stream, to=spool)
            if sizes[stream] != expected:
                return False  # archived and deleted meanwhile, or notes arrived: next time
            spool.seek(0)
            object_save(name=_stored(run, stream), content=spool)
    with transaction.atomic():
        if any(chunks_end(run_id=run.id, stream=s) != size for s, size in sizes.items()):
            return False
        archived = PipelineRun.objects.filter(id=run.id, output_archived_at__isnull=True).update(
            output_archived_at=timezone.now()
        )
        if archived:
            chunks_delete(run_id=run.id)
    run.refresh_from_db(fields=["output_archived_at"])
    return bool(archived)


def output_remove(stored: str) -> int:
    """Delete one stored log or metrics file/object; the bytes freed (0 if none)."""
    if not stored:
        return 0
    if is_object_name(stored):
        return object_delete(name=stored)
    path = logs.data_file(stored)
    if path is None:
        return 0
    try:
        size = path.stat().st_size
        path.unlink()
    except OSError as exc:
        logger.warning("cannot remove %s: %s", path, exc)
        return 0
    return size


def runs_to_archive(*, finished_before: datetime, limit: int = 50) -> list[PipelineRun]:
    """Finished runs whose output is still in chunks (their engine died between the end and
    archiving, or the run was failed or cancelled by another process): the sweep's work."""
    return list(
        PipelineRun.objects.filter(
            id__in=RunOutputChunk.objects.values("run_id"),
            status__in=TERMINAL_STATUSES,
            output_archived_at__isnull=True,
            finished_at__lt=finished_before,
        ).order_by("finished_at")[:limit]
    )
