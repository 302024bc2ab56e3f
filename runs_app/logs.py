"""A run's files: where its log, metrics and artifacts live, the log's line format, engine notes
appended after the end, and reading them back for the admin and the API (tailing by byte offset).

Log format: every line is `<UTC time> <text>\\n`, the time as `2026-11-27T22:45:01.123Z` (ISO
8601, milliseconds, `Z`). Engine notes are ordinary lines whose text starts with `[fastflow] `.
Metrics: one JSON object per line. Artifacts: files the engine kept from the run's output
directory (the executed notebook of a notebook pipeline), in `artifacts/<pipeline>/<run id>/`.
The engine's writers (`engine/logstream.py`, `engine/metrics.py`, `engine/outputs.py`) produce
these files; everything else reads or appends through here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
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
NOTE_PREFIX = "[fastflow] "


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


def run_log_file(run: PipelineRun) -> Path:
    """Where a new run's log goes (`logs/<pipeline>/<run id>.log` in the data dir)."""
    return Path(settings.LOGS_DIR) / run.pipeline_id / f"{run.id}.log"


def run_metrics_file(run: PipelineRun) -> Path:
    return Path(settings.METRICS_DIR) / f"{run.id}.jsonl"


def artifacts_root() -> Path:
    return Path(settings.DATA_DIR) / "artifacts"


def artifacts_dir_for(*, pipeline_name: str, run_id: object) -> Path:
    """Where the files kept from a run live (derived from the run, like its log's path)."""
    return artifacts_root() / pipeline_name / str(run_id)


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

    A plain timestamped append: notes are few and explain the end of a run, so like the
    writer's own notes they bypass the log size cap. A log that cannot be written is logged.
    """
    if not notes or not run.log_file:
        return
    path = Path(run.log_file)
    try:
        with private_open(path, "ab") as fh:  # 0600 in 0700 folders, like the writer's
            for note in notes:
                line = f"{format_timestamp(datetime.now(UTC))} {NOTE_PREFIX}{note}\n"
                fh.write(line.encode("utf-8", "replace"))
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
