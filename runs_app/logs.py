"""Reading a run's log and metrics files, for the admin and the API (tailing by byte offset)."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from runs_app.models import PipelineRun

DEFAULT_CHUNK = 256 * 1024


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
        fh.seek(offset)
        data = fh.read(limit)
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
