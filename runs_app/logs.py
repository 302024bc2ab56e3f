"""A run's files: where its log, metrics and artifacts live, the log's line format, engine notes
appended after the end, and reading them back for the admin and the API (tailing by byte offset).

Log format (one line per line of output, UTF-8):

    <source> <UTC time> <text>\n        e.g.  o 2026-11-27T22:45:01.123Z hello

`source` is `o` (the pipeline's stdout), `e` (its stderr) or `n` (an engine note). The engine
sets it from the stream a line arrived on, never from the text, so a pipeline cannot write a
line that reads as an engine note. The time is ISO 8601 with milliseconds and `Z`.

Logs written before sources existed (format 1) have lines `<UTC time> <text>`, stdout and stderr
merged and notes as text starting with `[fastflow] `. A format-1 line starts with a digit, a
current one with a source letter and a space, so every line says which format it is in (a log
continued across an upgrade may hold both). The source of a format-1 line is unknown (`""`).

Metrics: one JSON object per line. Artifacts: files the engine kept from the run's output
directory (the executed notebook of a notebook pipeline), in
`artifacts/<pipeline>/<shard>/<run id>/`. The engine's writers (`engine/logstream.py`,
`engine/metrics.py`, `engine/outputs.py`) produce these files; everything else reads or appends
through here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from django.conf import settings
from django.http import FileResponse

from fastflow_site.datadir import private_open
from runs_app.errors import InvalidRunRequest

if TYPE_CHECKING:  # only for annotations: the executors' writers import this module
    from runs_app.models import PipelineRun

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 256 * 1024
# The largest offset a file can be seeked to (off_t is signed 64-bit); anything beyond it made
# `seek()` raise instead of returning an empty read.
MAX_LOG_OFFSET = 2**63 - 1
STDOUT = "o"
STDERR = "e"
NOTE = "n"
SOURCES = (STDOUT, STDERR, NOTE)
# How format-1 logs marked engine notes (and how a note reads as plain text).
NOTE_PREFIX = "[fastflow] "
# The UI and the API name the sources with these words.
SOURCE_NAMES = {STDOUT: "stdout", STDERR: "stderr", NOTE: "note", "": "unknown"}


def format_timestamp(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse our line prefix or Docker's RFC 3339 nano timestamps (more than 6 digits)."""
    text = text.strip().removesuffix("Z")
    whole, _, fraction = text.partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    if fraction:
        fraction = fraction.split("+")[0][:6].ljust(6, "0")
        moment = moment.replace(microsecond=int(fraction))
    return moment


def run_files_folder(run: PipelineRun) -> Path:
    """The folder of a run's files below `logs/`, `metrics/` or `artifacts/`: `<pipeline>/<first
    two hex digits of the run id>`. Ids are random, so a pipeline's runs spread evenly over its
    256 folders: one folder holds a pipeline's runs / 256 files (about 4,000 at a million runs
    of one pipeline), not all of them in one listing."""
    return files_folder(pipeline_name=run.pipeline_id, run_id=run.id)


def files_folder(*, pipeline_name: str, run_id: uuid.UUID) -> Path:
    """`run_files_folder` from the pipeline's name and the run's id (for rows read as values)."""
    return Path(pipeline_name) / run_id.hex[:2]


def log_line(source: str, at: datetime, text: bytes | str) -> bytes:
    """One line of the log; `text` without its newline (one is added). Invalid UTF-8 in `text`
    is replaced, so the file stays valid UTF-8 whatever the pipeline prints."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.replace("\n", " ")  # a line never holds a newline (callers split first)
    return f"{source} {format_timestamp(at)} {text}\n".encode("utf-8", "replace")


@dataclass(frozen=True)
class LogLine:
    source: str  # STDOUT, STDERR, NOTE, or "" for a format-1 line (source unknown)
    at: datetime | None  # None when the line has no readable timestamp (a cut first line)
    text: str  # without the newline

    @property
    def is_note(self) -> bool:
        """An engine note. Format-1 notes were recognised by their text, as the engine did
        then (forgeable by the pipeline: only old logs are read that way)."""
        return self.source == NOTE or (self.source == "" and self.text.startswith(NOTE_PREFIX))

    @property
    def note_text(self) -> str:
        """A note's message without the format-1 prefix."""
        return self.text.removeprefix(NOTE_PREFIX) if self.source == "" else self.text

    def to_dict(self) -> dict[str, str | None]:
        return {
            "source": SOURCE_NAMES[self.source],
            "time": format_timestamp(self.at) if self.at else None,
            "text": self.text,
        }


def log_line_parse(raw: bytes | str) -> LogLine:
    """Parse one line of either format (with or without its newline); never raises."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    raw = raw.rstrip("\n")
    source = ""
    if len(raw) >= 2 and raw[0] in SOURCES and raw[1] == " ":
        source, raw = raw[0], raw[2:]
    stamp, sep, text = raw.partition(" ")
    try:
        at = parse_timestamp(stamp)
    except ValueError:
        return LogLine(source, None, raw)
    return LogLine(source, at, text if sep else "")


def log_lines_parse(data: bytes) -> list[LogLine]:
    return [log_line_parse(raw) for raw in data.splitlines()]


def append_whole(fh: BinaryIO, data: bytes, *, size: int) -> None:
    """Append `data` to an unbuffered file whose size is `size`, all of it or nothing: when the
    disk fills up half-way (ENOSPC), the file is cut back to `size` before the OSError is
    raised, so a reader never sees half a line and the next write starts on a line boundary."""
    view = memoryview(data)
    try:
        while view:
            view = view[fh.write(view) :]
    except OSError:
        with contextlib.suppress(OSError):
            fh.truncate(size)
        raise


def run_log_file(run: PipelineRun) -> Path:
    """Where a new run's log goes: `logs/<pipeline>/<shard>/<run id>.log` in the data dir.
    The path is stored on the run (`log_file`), so files of the older flat layout, and any
    moved by `manage.py runfiles_shard`, keep being found through their row."""
    return Path(settings.LOGS_DIR) / run_files_folder(run) / f"{run.id}.log"


def run_metrics_file(run: PipelineRun) -> Path:
    """Where a new run's metrics go: `metrics/<pipeline>/<shard>/<run id>.jsonl`."""
    return Path(settings.METRICS_DIR) / run_files_folder(run) / f"{run.id}.jsonl"


def artifacts_root() -> Path:
    return Path(settings.DATA_DIR) / "artifacts"


def artifacts_dir_for(*, pipeline_name: str, run_id: uuid.UUID) -> Path:
    """Where the files kept from a run live: `artifacts/<pipeline>/<shard>/<run id>/` (derived
    from the run, never stored: no row points at a folder that was moved)."""
    return artifacts_root() / files_folder(pipeline_name=pipeline_name, run_id=run_id) / str(run_id)


def run_artifacts_dir(run: PipelineRun) -> Path:
    return artifacts_dir_for(pipeline_name=run.pipeline_id, run_id=run.id)


@dataclass(frozen=True)
class Artifact:
    name: str
    size: int
    path: Path


def run_artifacts(*, run: PipelineRun) -> list[Artifact]:
    """The run's artifacts (regular files only), by name."""
    folder = run_artifacts_dir(run)
    if not _inside(folder, Path(settings.DATA_DIR)) or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink():
            found.append(Artifact(name=path.name, size=path.stat().st_size, path=path))
    return found


def run_artifact(*, run: PipelineRun, name: str) -> Artifact | None:
    """One artifact by its exact name (a name is never a path)."""
    return next((a for a in run_artifacts(run=run) if a.name == name), None)


def artifact_response(*, run: PipelineRun, artifact: Artifact) -> FileResponse:
    """The artifact as a download (the admin's and the API's)."""
    return FileResponse(
        artifact.path.open("rb"),
        as_attachment=True,
        filename=f"run-{run.pk}-{artifact.name}",
        content_type="application/octet-stream",
    )


def artifacts_remove(folder: Path) -> tuple[int, int]:
    """Delete a run's artifacts folder; returns (files, bytes) removed."""
    if not folder.is_dir() or not _inside(folder, Path(settings.DATA_DIR)):
        return 0, 0
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    size = sum(p.stat().st_size for p in files)
    shutil.rmtree(folder, ignore_errors=True)
    return len(files), size


def run_artifacts_remove(*, run: PipelineRun) -> None:
    artifacts_remove(run_artifacts_dir(run))


def log_append_notes(*, run: PipelineRun, notes: list[str]) -> None:
    """Append engine notes to a finished run's log (retries queued, downstream runs, ...).

    A plain append of note lines: notes are few and explain the end of a run, so like the
    writer's own notes they bypass the log size cap. A log that cannot be written (a full
    disk) is logged; the file keeps what it had.
    """
    if not notes or not run.log_file:
        return
    path = Path(run.log_file)
    try:
        with private_open(path, "ab", buffering=0) as fh:  # 0600 in 0700 folders
            data = b"".join(log_line(NOTE, datetime.now(UTC), note) for note in notes)
            append_whole(fh, data, size=fh.seek(0, 2))
    except OSError as exc:
        logger.warning("run %s: cannot append to %s: %s", run.id, run.log_file, exc)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def data_file(stored: str) -> Path | None:
    """A file path stored on a run, only if that file exists inside the data dir (paths in the
    database are never trusted: a hand-edited row must not reach /etc/passwd)."""
    if not stored:
        return None
    path = Path(stored)
    if not _inside(path, Path(settings.DATA_DIR)) or not path.is_file():
        return None
    return path


def log_path(*, run: PipelineRun) -> Path | None:
    return data_file(run.log_file)


def log_offset_parse(*, raw: str) -> int:
    """A byte offset from a query parameter or `Last-Event-ID`, for every log endpoint alike."""
    try:
        offset = int(raw)
    except ValueError:
        offset = -1
    if not 0 <= offset <= MAX_LOG_OFFSET:
        message = f"offset must be an integer from 0 to {MAX_LOG_OFFSET}, got {raw[:40]!r}"
        raise InvalidRunRequest(message, fields={"offset": message})
    return offset


def read_from(fh: BinaryIO, offset: int, limit: int = -1) -> bytes:
    """Up to `limit` bytes from `offset`; nothing past the end. Filesystems refuse to seek far
    beyond their largest file size (EINVAL), so an offset past the end is never seeked to."""
    if offset >= os.fstat(fh.fileno()).st_size:
        return b""
    fh.seek(offset)
    return fh.read(limit)


def log_missing(*, run: PipelineRun) -> bool:
    """A finished run whose recorded log file is gone (deleted by hand, a lost volume): it
    must say so, not look like a run that printed nothing. A live run's file may simply not
    exist yet (its container is starting), and a run that never started has none."""
    return bool(run.log_file) and run.is_terminal and log_path(run=run) is None


def metrics_missing(*, run: PipelineRun) -> bool:
    return bool(run.metrics_file) and run.is_terminal and data_file(run.metrics_file) is None


def log_read(*, run: PipelineRun, offset: int = 0, limit: int = DEFAULT_CHUNK) -> tuple[bytes, int]:
    """Bytes of the log from `offset` (at most `limit`), and the offset to ask for next.

    Only whole lines are returned, so a reader tailing a live run never sees half a line;
    a line longer than `limit` is returned in pieces.
    """
    path = log_path(run=run)
    if path is None:
        return b"", max(offset, 0)
    offset = max(offset, 0)
    with path.open("rb") as fh:
        data = read_from(fh, offset, limit)
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]
        elif len(data) < limit:
            data = b""  # an incomplete last line: wait for its newline
    return data, offset + len(data)


def metrics_read(*, run: PipelineRun) -> list[dict]:
    """The run's metric samples; malformed lines (e.g. a half-written last line) are skipped."""
    path = data_file(run.metrics_file)
    if path is None:
        return []
    samples = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return samples
