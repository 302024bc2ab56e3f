"""Where the shared uv cache lives on the host, per executor.

Docker runs write the cache as the runner user (65534 by default) and the local executor as the
engine's own user; files one creates are not writable by the other, so each executor gets its
own sub-directory of `FASTFLOW_UV_CACHE_DIR` (`docker/`, `local/`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from django.conf import settings


def uv_cache_dir(executor_name: str, *, world_writable: bool = False) -> Path:
    """Create (if needed) and return the executor's cache directory.

    With `world_writable`, the directory is made 0o777 so that the non-root runner uid of a
    container can create entries in it whoever the engine runs as (entries uv creates inside
    are then owned by that uid).
    """
    path = Path(settings.FASTFLOW_UV_CACHE_DIR) / executor_name
    path.mkdir(parents=True, exist_ok=True)
    if world_writable and (path.stat().st_mode & 0o777) != 0o777:
        # Not our directory (another engine user created it): leave it, uv will say what fails.
        with contextlib.suppress(PermissionError):
            os.chmod(path, 0o777)  # noqa: S103 - the cache is shared with the runner uid on purpose
    return path
