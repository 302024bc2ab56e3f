"""The shared uv cache and the prepared run environments built from it, per executor.

Runs never write what another run executes. Only the engine's cache warm-up (`Executor.warm`)
writes the shared uv cache `FASTFLOW_UV_CACHE_DIR/<executor>/`, and from it builds one virtual
environment per distinct set of requirements:

    FASTFLOW_UV_CACHE_DIR/<executor>-envs/<key>/      key = sha256(requirements.txt, the
                                                             engine's extra packages, Python
                                                             version, runtime: image id / uv
                                                             version + interpreter)

The engine's extra packages are what it adds to a pipeline's own requirements: a notebook
pipeline's runner (nbclient, ipykernel: `PipelineSpec.extra_requirements`).

Runs with requirements execute that environment's interpreter directly (no uv at run time, so
nothing to resolve or link: a warm setup is interpreter start-up only), and see it read-only.
A run whose environment is not built yet (warm-up pending or failed) installs its requirements
with uv into a cache of its own that ends with the run, never into the shared one.

An environment is built in `<key>.build-<random>` and renamed into place once complete, so a run
sees a whole environment or none; rename is atomic, and a second engine finishing the same key
first simply wins. Environments are independent copies (`--link-mode copy`), not hard links
into the cache, so nothing done to the cache later changes an environment in use.

Docker runs and warm-ups write as the runner user (65534 by default) and the local executor as
the engine's own user; files one creates are not writable by the other, so each executor has
its own cache and environments.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import time
import uuid
from pathlib import Path

from django.conf import settings

from fastflow_site.datadir import private_dir
from runs_app.engine.logstream import TLS_FAILURE
from runs_app.outcome import CA_BUNDLE_HINT

# A build directory older than this was left by a warm-up that died: removed by the next one.
STALE_BUILD_SECONDS = 6 * 3600.0
BUILD_MARK = ".build-"


def uv_cache_dir(executor_name: str, *, world_writable: bool = False) -> Path:
    """Create (if needed) and return the executor's shared cache directory (warm-ups only).

    With `world_writable`, the directory is made 0o777 so that the non-root runner uid of a
    warm-up container can create entries in it whoever the engine runs as.
    """
    path = Path(settings.FASTFLOW_UV_CACHE_DIR) / executor_name
    if not world_writable:
        return private_dir(path)
    private_dir(path.parent)
    path.mkdir(exist_ok=True)
    _make_world_writable(path)
    return path


def _make_world_writable(path: Path) -> None:
    if (path.stat().st_mode & 0o777) != 0o777:
        # Not our directory (another engine user created it): leave it, uv will say what fails.
        with contextlib.suppress(PermissionError):
            os.chmod(path, 0o777)  # noqa: S103 - written by the runner uid of warm-ups on purpose


def envs_dir(executor_name: str) -> Path:
    # Private like the data dir: a Docker run gets its environment as a bind mount (the
    # daemon resolves the source), so the runner uid never needs to traverse this folder.
    return private_dir(Path(settings.FASTFLOW_UV_CACHE_DIR) / f"{executor_name}-envs")


def env_key(
    *,
    pipeline_dir: Path,
    python_version: str,
    runtime_id: str,
    extra_requirements: tuple[str, ...] = (),
) -> str | None:
    """What identifies an environment: the exact requirements (requirements.txt and the
    engine's extra packages), the Python version and the runtime that installed them. None
    when the pipeline needs nothing installed."""
    try:
        content = (Path(pipeline_dir) / "requirements.txt").read_bytes()
    except OSError:
        if not extra_requirements:
            return None
        content = b""
    extras = "".join(f"\0{extra}" for extra in extra_requirements)
    salt = f"\0{python_version}\0{runtime_id}{extras}".encode()
    return hashlib.sha256(content + salt).hexdigest()


def env_path(executor_name: str, key: str) -> Path:
    return envs_dir(executor_name) / key


def env_ready(executor_name: str, key: str | None) -> Path | None:
    """The prepared environment for `key`, or None when there is none (yet)."""
    if key is None:
        return None
    path = env_path(executor_name, key)
    return path if path.is_dir() else None


def env_build_dir(executor_name: str, key: str, *, world_writable: bool = False) -> Path:
    """A fresh, empty directory to build the environment for `key` in (see `env_publish`).
    Build directories that a dead warm-up left behind are removed first."""
    root = envs_dir(executor_name)
    for leftover in root.glob(f"*{BUILD_MARK}*"):
        with contextlib.suppress(OSError):
            if time.time() - leftover.stat().st_mtime > STALE_BUILD_SECONDS:
                env_remove(leftover)
    build = root / f"{key}{BUILD_MARK}{uuid.uuid4().hex[:12]}"
    build.mkdir()
    if world_writable:
        _make_world_writable(build)
    return build


def env_publish(build: Path, executor_name: str, key: str) -> Path:
    """Move a complete build into place (atomic). If another warm-up published the same key
    meanwhile, theirs is kept and this build removed: both hold the same requirements."""
    final = env_path(executor_name, key)
    # Was writable by the runner uid; now readable by it (runs mount it), writable by nobody.
    os.chmod(build, 0o755)  # noqa: S103
    try:
        build.rename(final)
    except OSError:
        if not final.is_dir():
            raise
        env_remove(build)
    return final


def env_remove(path: Path) -> None:
    """Remove an environment or build directory, read-only files included."""

    def writable_again(function, name, _exc):  # noqa: ANN001 - shutil's onerror signature
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            os.chmod(name, stat.S_IRWXU)
            function(name)

    shutil.rmtree(path, onerror=writable_again)


def make_read_only(path: Path) -> None:
    """Drop every write bit under `path` (the local executor's environments). Not isolation:
    the same user can add them back; it stops accidents such as `pip install` at run time."""
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            target = Path(root) / name
            if not target.is_symlink():
                target.chmod(target.stat().st_mode & ~0o222)
    path.chmod(path.stat().st_mode & ~0o222)


# The warm-up steps every executor runs, in this order, with its own uv and interpreter:
# resolving first gives a readable error for unresolvable requirements; then the environment is
# created and the requirements installed into it (from the shared cache, filling it).
WARM_RESOLVE = "resolving requirements (uv pip compile)"
WARM_CREATE = "creating the environment (uv venv)"
WARM_INSTALL = "installing requirements (uv pip install)"
WARM_OUTPUT_TAIL_LINES = 30
# What the cold path says in the run's log, and after a failure of such a run.
COLD_NOTE = (
    "requirements are not prepared yet (the cache warm-up has not finished or failed): "
    "installing them for this run only"
)
COLD_HINT = (
    "this run installed its requirements by itself because the cache warm-up had not prepared "
    "them; see the pipeline's warm-up error, or run the warm-up again"
)


def warm_install_args(
    *, python: str, requirements: str | None, extra_requirements: tuple[str, ...] = ()
) -> list[str]:
    """`uv pip install` arguments after the uv binary: copies (not links into the cache) and
    bytecode compiled now, since runs cannot write `__pycache__` into their read-only env.
    `requirements`: the requirements file as the installing uv sees it (None: there is none)."""
    return [
        "pip", "install", "--python", python, "--link-mode", "copy", "--compile-bytecode",
        *(["-r", requirements] if requirements else []), *extra_requirements,
    ]  # fmt: skip


def cold_with_args(*, requirements: str | None, extra_requirements: tuple[str, ...]) -> list[str]:
    """The `uv run` options that install a cold run's packages into its own cache: its
    requirements file (a path as the runner sees it) and the engine's extra packages."""
    arguments = ["--with-requirements", requirements] if requirements else []
    for extra in extra_requirements:
        arguments += ["--with", extra]
    return arguments


def warm_step_failed(what: str, exit_code: object, output: str) -> str:
    """The warm-up error shown on the pipeline: the step, its exit code and its last lines."""
    tail = "\n".join(output.strip().splitlines()[-WARM_OUTPUT_TAIL_LINES:])
    message = f"{what} failed (exit code {exit_code}):\n{tail}"
    found = TLS_FAILURE.search(output.encode())
    if found:  # a run would fail the same way: say what to configure
        message += "\n" + CA_BUNDLE_HINT.format(detail=found.group(0).decode())
    return message
