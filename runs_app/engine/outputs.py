"""A run's output directory: the one place a run writes that the engine reads after it ended.

Every executor gives every run an empty directory `<data dir>/run-outputs/<run id>/` (bind-
mounted read-write at /fastflow in a container, whose root filesystem is read-only; a subPath
of FASTFLOW_K8S_OUTPUT_VOLUME at /fastflow in a Kubernetes pod; used directly by a local
process). `$FASTFLOW_ROUTE_FILE` names the route file in it, and the
notebook runner writes the executed notebook there. After the run ended, `outputs_collect`
reads the route (at most a few KiB, a regular file only: the directory is written by the
pipeline, so a symlink or a FIFO placed there is refused rather than followed) and keeps the
executed notebook as the run's artifact (`runs_app.logs.run_artifacts_dir`), within
FASTFLOW_ARTIFACT_MAX_BYTES. The directory is removed with the execution's cleanup.

The path depends only on the run id, so an engine that re-attaches to a container after a
restart finds the same directory.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from fastflow_site.datadir import private_dir, private_open
from runs_app.engine.wrapper import EXECUTED_NOTEBOOK
from runs_app.outcome import format_bytes

ROUTE_FILE = "route"
ROUTE_READ_BYTES = 4096
MOUNT_POINT = "/fastflow"  # where a container sees its output directory


def output_dir_for(run_id: str) -> Path:
    return Path(settings.DATA_DIR) / "run-outputs" / run_id


def output_dir_prepare(path: Path, *, world_writable: bool) -> None:
    """Create the (empty) directory, private like the rest of the data dir. `world_writable`
    for a container's runner uid, which is not the engine's: its parents stay 0700, so no
    other local user can reach it (the container sees the bind-mounted folder itself)."""
    private_dir(path.parent)
    private_dir(path)
    if world_writable:
        os.chmod(path, 0o777)  # noqa: S103 - the run's uid must write here, on purpose


def output_dir_remove(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class CollectedOutputs:
    route: str | None = None  # the route file's text (not yet validated); None: not written
    artifacts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _open_regular(path: Path) -> int | None:
    """A read-only descriptor of a regular file, None if absent; raises OSError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is not a regular file")
    return fd


def _read_route(output_dir: Path, collected: CollectedOutputs) -> None:
    try:
        fd = _open_regular(output_dir / ROUTE_FILE)
    except OSError as exc:
        collected.notes.append(f"route file ignored: {exc.strerror or exc}")
        return
    if fd is None:
        return
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(ROUTE_READ_BYTES + 1)
    if len(data) > ROUTE_READ_BYTES:
        collected.notes.append(f"route file ignored: larger than {ROUTE_READ_BYTES} bytes")
        return
    try:
        collected.route = data.decode("utf-8")
    except UnicodeDecodeError:
        collected.notes.append("route file ignored: not valid UTF-8 text")


def _keep_notebook(output_dir: Path, artifacts_dir: Path, collected: CollectedOutputs) -> None:
    limit = settings.FASTFLOW_ARTIFACT_MAX_BYTES
    try:
        fd = _open_regular(output_dir / EXECUTED_NOTEBOOK)
    except OSError as exc:
        collected.notes.append(f"executed notebook not kept: {exc.strerror or exc}")
        return
    if fd is None:
        return
    with os.fdopen(fd, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        if size > limit:
            collected.notes.append(
                f"executed notebook not kept: {format_bytes(size)} is over "
                f"FASTFLOW_ARTIFACT_MAX_BYTES ({format_bytes(limit)})"
            )
            return
        with private_open(artifacts_dir / EXECUTED_NOTEBOOK, "wb") as copy:
            shutil.copyfileobj(source, copy)
    collected.artifacts.append(EXECUTED_NOTEBOOK)
    collected.notes.append(f"executed notebook kept as the run's artifact {EXECUTED_NOTEBOOK}")


def outputs_collect(*, output_dir: Path | None, artifacts_dir: Path) -> CollectedOutputs:
    """Read what the ended run left in its output directory; never raises."""
    collected = CollectedOutputs()
    if output_dir is None or not output_dir.is_dir():
        return collected
    _read_route(output_dir, collected)
    try:
        _keep_notebook(output_dir, artifacts_dir, collected)
    except OSError as exc:
        collected.notes.append(f"executed notebook not kept: {exc}")
    return collected
