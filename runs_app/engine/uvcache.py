"""Where the shared uv cache lives on the host, per executor.

Docker runs write the cache as the runner user (65534 by default) and the local executor as the
engine's own user; files one creates are not writable by the other, so each executor gets its
own sub-directory of `FASTFLOW_UV_CACHE_DIR` (`docker/`, `local/`).

After a successful warm-up, runs of the same requirements resolve with `uv run --offline`: uv
would otherwise revalidate every package with the index on each run (hundreds of ms), and the
run uses exactly what the warm-up resolved, like a lock. A new warm-up (requirements changed,
or run again from the admin) picks up newer versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from fastflow_site.datadir import private_dir, private_open
from runs_app.engine.logstream import TLS_FAILURE
from runs_app.outcome import CA_BUNDLE_HINT


def uv_cache_dir(executor_name: str, *, world_writable: bool = False) -> Path:
    """Create (if needed) and return the executor's cache directory.

    With `world_writable`, the directory is made 0o777 so that the non-root runner uid of a
    container can create entries in it whoever the engine runs as (entries uv creates inside
    are then owned by that uid).
    """
    path = Path(settings.FASTFLOW_UV_CACHE_DIR) / executor_name
    if not world_writable:
        return private_dir(path)
    private_dir(path.parent)
    path.mkdir(exist_ok=True)
    if world_writable and (path.stat().st_mode & 0o777) != 0o777:
        # Not our directory (another engine user created it): leave it, uv will say what fails.
        with contextlib.suppress(PermissionError):
            os.chmod(path, 0o777)  # noqa: S103 - the cache is shared with the runner uid on purpose
    return path


def warm_stamp(
    executor_name: str,
    *,
    pipeline_dir: Path,
    python_version: str,
    runtime_id: str,
    extra_requirements: tuple[str, ...] = (),
) -> Path | None:
    """The file that says "these exact requirements (requirements.txt and the engine's extra
    packages) were installed into this cache by this runtime (image id / uv + interpreter)".
    None when the pipeline needs nothing installed."""
    requirements = Path(pipeline_dir) / "requirements.txt"
    try:
        content = requirements.read_bytes()
    except OSError:
        if not extra_requirements:
            return None
        content = b""
    extras = "".join(f"\0{extra}" for extra in extra_requirements)
    salt = f"\0{python_version}\0{runtime_id}{extras}".encode()
    digest = hashlib.sha256(content + salt).hexdigest()
    # Inside the cache itself: wiping the cache wipes the stamps too.
    return uv_cache_dir(executor_name) / "fastflow-warm" / digest


def is_warm(stamp: Path | None) -> bool:
    return stamp is not None and stamp.is_file()


def mark_warm(stamp: Path | None) -> None:
    if stamp is not None:
        with private_open(stamp, "w") as fh:
            fh.write(datetime.now(UTC).isoformat())


# The two warm-up steps every executor runs, in this order, with its own uv and interpreter:
# resolving first gives a readable error for unresolvable requirements; installing with the
# same `uv run --with-requirements` as a run fills the cache the next run uses.
WARM_RESOLVE = "resolving requirements (uv pip compile)"
WARM_INSTALL = "installing requirements (uv run --with-requirements)"


def with_arguments(*, requirements: str | None, extra_requirements: tuple[str, ...]) -> list[str]:
    """The `uv run` options that install a run's packages: its requirements file (a path as
    the runner sees it) and the engine's extra packages."""
    arguments = ["--with-requirements", requirements] if requirements else []
    for extra in extra_requirements:
        arguments += ["--with", extra]
    return arguments


WARM_OUTPUT_TAIL_LINES = 30


def warm_step_failed(what: str, exit_code: object, output: str) -> str:
    """The warm-up error shown on the pipeline: the step, its exit code and its last lines."""
    tail = "\n".join(output.strip().splitlines()[-WARM_OUTPUT_TAIL_LINES:])
    message = f"{what} failed (exit code {exit_code}):\n{tail}"
    found = TLS_FAILURE.search(output.encode())
    if found:  # a run would fail the same way: say what to configure
        message += "\n" + CA_BUNDLE_HINT.format(detail=found.group(0).decode())
    return message
