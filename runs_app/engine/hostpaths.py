"""Bind-mount sources as the Docker daemon sees them.

A run container gets the pipeline folder, the uv cache and the CA bundle as bind mounts, and
Docker resolves a bind mount's source on the daemon's host. An engine that itself runs in a
container (driving Docker through the mounted socket) sees other paths than the host:
`/pipelines/etl` in the engine may be `/srv/checkout/etl` on the host, and `/data/uv-cache` may
live in a named volume under `/var/lib/docker/volumes/…/_data`. Mounting the engine's own path
would give the run an empty directory, or fail.

`HostPaths.source()` turns an engine path into the daemon's path:

- `FASTFLOW_DOCKER_PATH_MAP` ("engine prefix=host prefix", comma-separated) when set;
- otherwise, when the engine runs in a container (its id shows in /proc/self/mountinfo), the
  mounts of that container, read once through the Docker API; a path on none of them exists
  only inside the engine's container and is refused with an error that says what to mount;
- otherwise (the engine runs on the Docker host) the path itself.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from runs_app.engine.base import InfrastructureError

# Docker bind-mounts /var/lib/docker/containers/<id>/{resolv.conf,hostname,hosts} into every
# container (Podman: …/overlay-containers/<id>/userdata/…). Not /.dockerenv: a VM built from
# a container image may carry one.
_CONTAINER_ID_IN_MOUNTINFO = re.compile(r"containers/([0-9a-f]{64})/")


def _normal(path: str) -> str:
    return str(PurePosixPath(path))


def _under(path: str, prefix: str) -> str | None:
    """The part of `path` below `prefix` ("" for the prefix itself), or None."""
    if path == prefix:
        return ""
    if prefix == "/":
        return path.lstrip("/")
    return path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None


def container_id_from_mountinfo(text: str) -> str:
    """This container's id, from the files Docker bind-mounts into it ("" if none)."""
    found = _CONTAINER_ID_IN_MOUNTINFO.search(text)
    return found.group(1) if found else ""


def own_container_id() -> str:
    """The id of the container this process runs in, "" when it runs on a host."""
    try:
        return container_id_from_mountinfo(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return ""


def mounts_of(container_attrs: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(destination in the container, source on the daemon's host) of every bind or volume
    mount, longest destination first."""
    pairs = [
        (_normal(m["Destination"]), _normal(m["Source"]))
        for m in container_attrs.get("Mounts") or []
        if m.get("Type") in {"bind", "volume"} and m.get("Source") and m.get("Destination")
    ]
    return tuple(sorted(pairs, key=lambda pair: len(pair[0]), reverse=True))


class HostPaths:
    """Engine path → daemon path, worked out once per executor."""

    def __init__(
        self,
        inspect_container: Callable[[str], dict[str, Any]],
        *,
        container_id: Callable[[], str] = own_container_id,
    ) -> None:
        self._inspect = inspect_container
        self._container_id = container_id
        self._lock = threading.Lock()
        self._mounts: tuple[tuple[str, str], ...] | None = None
        self._own_mounts = False  # the pairs are this container's mounts: all else is private

    def source(self, path: Path | str) -> str:
        engine_path = _normal(str(Path(path).resolve()))
        mounts = self._mapping()
        for prefix, host in mounts:
            rest = _under(engine_path, prefix)
            if rest is not None:
                return str(PurePosixPath(host) / rest) if rest else host
        if self._own_mounts:
            raise InfrastructureError(
                f"{engine_path} exists only inside the engine's container (it is on none of "
                "its volumes or bind mounts), so a run container cannot mount it: put "
                "FASTFLOW_DATA_DIR, FASTFLOW_PIPELINES_DIR and FASTFLOW_RUNNER_CA_BUNDLE on "
                "volumes or bind mounts, or set FASTFLOW_DOCKER_PATH_MAP"
            )
        return engine_path

    def _mapping(self) -> tuple[tuple[str, str], ...]:
        if settings.FASTFLOW_DOCKER_PATH_MAP:
            self._own_mounts = False
            return settings.FASTFLOW_DOCKER_PATH_MAP
        with self._lock:
            if self._mounts is None:
                self._mounts, self._own_mounts = self._detect()
            return self._mounts

    def _detect(self) -> tuple[tuple[tuple[str, str], ...], bool]:
        own_id = self._container_id()
        if not own_id:
            return (), False
        try:
            return mounts_of(self._inspect(own_id)), True
        except LookupError:
            pass
        raise InfrastructureError(
            f"the engine runs in container {own_id[:12]}, which the Docker daemon it drives "
            "does not know (a daemon on another host?), so the host paths of its mounts are "
            "unknown: set FASTFLOW_DOCKER_PATH_MAP, e.g. "
            "'/data=/srv/fastflow/data,/pipelines=/srv/fastflow/pipelines'"
        )
