"""Live output without a shared disk (FASTFLOW_RUN_STORAGE=s3; docs/storage.md).

Executors write a run's log and metrics to files below the engine's own data dir, exactly as
with local storage (`LogWriter`, `MetricsRecorder`: masked, capped, whole lines). This module
sits behind those files, so it applies to every executor alike:

- `OutputShipper` copies, every FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS, the whole lines each
  followed run's files gained into the database (`output_chunks.py`), one batch per stream, at
  the byte offset they have in the file. The web process reads them from there while the run
  is live. Only bytes already seen at the previous pass are copied: a write the `LogWriter`
  cuts back (a full disk) never reaches the database.
- When the run ends the engine copies the rest (`finish`), records the outcome, and archives
  the chunks to the object store (`run_output.output_archive`).
- `output_prepare` writes a run's chunks back into its files before an executor starts or
  re-attaches it, so the resume point (`logstream.resume_point`), the ready note and the peak
  memory come from what the database holds, on whichever host the engine now runs: a fresh
  engine with an empty disk continues the log where the database has it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from fastflow_site.datadir import private_open
from runs_app.models import PipelineRun
from runs_app.output_chunks import chunks_append, chunks_copy, chunks_end
from runs_app.run_output import (
    LOG,
    METRICS,
    is_object_name,
    output_archive,
    output_local_path,
    output_names,
    runs_to_archive,
)

logger = logging.getLogger(__name__)


@dataclass
class _Tail:
    """One followed file: what was copied (`shipped`) and its size at the last pass (`seen`)."""

    stream: str
    path: Path
    shipped: int
    seen: int

    def take(self, *, final: bool) -> bytes:
        """The whole lines to copy now: up to the size seen last time (or all, at the end)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        stable = size if final else min(size, self.seen)
        self.seen = size
        if stable <= self.shipped:
            return b""
        with self.path.open("rb") as fh:
            fh.seek(self.shipped)
            data = fh.read(stable - self.shipped)
        return data if final else data[: data.rfind(b"\n") + 1]


@dataclass
class _Follow:
    run_id: str
    tails: list[_Tail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    lost: bool = False


def _stored_files(run: PipelineRun) -> list[tuple[str, str]]:
    log_file, metrics_file = output_names(run)
    return [(s, n) for s, n in ((LOG, log_file), (METRICS, metrics_file)) if is_object_name(n)]


def output_prepare(*, run: PipelineRun) -> None:
    """Before an executor writes a run's files: make them hold exactly the run's chunks (none
    for a new run). Any tail a previous engine wrote but never copied is dropped: the executor
    fetches it again from the resume point (a container's log) or it never ran."""
    for stream, name in _stored_files(run):
        path = output_local_path(name)
        with private_open(path, "wb") as fh:  # 0600 in 0700 folders
            chunks_copy(run_id=run.id, stream=stream, to=fh)


class OutputShipper:
    """Follows the engine's object-store runs and copies their new output into the database.
    `follow`, `finish` and `drop` come from the run worker threads, `ship_all` from its own."""

    def __init__(self, *, engine_id: str) -> None:
        self.engine_id = engine_id  # only copies while the run is this engine's
        self._lock = threading.Lock()
        self._follows: dict[str, _Follow] = {}

    def follow(self, run: PipelineRun) -> None:
        """Start copying a run's files from where the database's copy ends (`output_prepare`
        made the files hold exactly that, and the executor may have appended since)."""
        tails = []
        for stream, name in _stored_files(run):
            end = chunks_end(run_id=run.id, stream=stream)
            tails.append(_Tail(stream=stream, path=output_local_path(name), shipped=end, seen=end))
        if tails:
            with self._lock:
                self._follows[str(run.id)] = _Follow(run_id=str(run.id), tails=tails)

    def ship_all(self) -> None:
        with self._lock:
            follows = list(self._follows.values())
        for follow in follows:
            try:
                self._ship(follow, final=False)
            except Exception:  # noqa: BLE001 - one run's failure must not stop the others
                logger.exception("run %s: copying its live output failed", follow.run_id)

    def finish(self, run: PipelineRun) -> None:
        """The run's files are complete: copy the rest, then stop following (a failed copy
        raises and leaves the run followed, so the caller can try again)."""
        with self._lock:
            follow = self._follows.get(str(run.id))
        if follow is not None:
            self._ship(follow, final=True)
            self._pop(run)

    def drop(self, run: PipelineRun) -> None:
        """Stop following without copying (another engine owns the run now)."""
        self._pop(run)

    def _pop(self, run: PipelineRun) -> _Follow | None:
        with self._lock:
            return self._follows.pop(str(run.id), None)

    def _ship(self, follow: _Follow, *, final: bool) -> None:
        with follow.lock:
            for tail in follow.tails:
                if follow.lost:
                    return
                data = tail.take(final=final)
                if not data:
                    continue
                if not chunks_append(
                    run_id=follow.run_id,
                    stream=tail.stream,
                    offset=tail.shipped,
                    data=data,
                    engine_id=self.engine_id,
                ):
                    # Another engine took the run over (or stored these offsets): two copies
                    # would interleave, so this engine stops copying.
                    logger.warning("run %s: its live output has another owner", follow.run_id)
                    follow.lost = True
                    return
                tail.shipped += len(data)


def output_finish(*, run: PipelineRun) -> None:
    """After the run's outcome is recorded: drop the engine's files (everything is in the
    database by now) and archive the output. A store that fails leaves the chunks for the
    archive sweep (`OutputArchiveChore`)."""
    stored = _stored_files(run)
    if not stored:
        return
    for _, name in stored:
        output_local_path(name).unlink(missing_ok=True)
    try:
        output_archive(run=run)
    except Exception as exc:  # noqa: BLE001 - the store is remote; the sweep retries
        logger.warning("run %s: archiving its output failed (retried later): %s", run.id, exc)


class OutputArchiveChore:
    """Archive finished runs whose output is still in chunks: their engine died after the end,
    or another process failed or cancelled them. Every engine does it; archiving is safe to
    race. A run is left alone for a grace period, the time its own engine normally needs."""

    GRACE_SECONDS = 30.0

    def __call__(self) -> None:
        cutoff = timezone.now() - timedelta(seconds=self.GRACE_SECONDS)
        for run in runs_to_archive(finished_before=cutoff):
            try:
                if output_archive(run=run):
                    logger.info("run %s: archived its output", run.id)
            except Exception as exc:  # noqa: BLE001 - next pass
                logger.warning("run %s: archiving its output failed: %s", run.id, exc)
