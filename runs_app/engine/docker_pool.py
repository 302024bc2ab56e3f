"""A warm pool of pre-started, single-use run containers for the Docker executor.

Creating and starting a container is most of what a Docker run costs before its first line
(200–450 ms on a 2-core machine). The pool pays it ahead of demand: a member is created with
everything a run of its pipeline would get that cannot change after creation — image, user,
read-only root, capabilities, pids/memory/CPU limits, /tmp, network, the pipeline folder and
its prepared environment read-only, the CA bundle, an empty output directory — and started
with a *waiter* as its process: the run's interpreter blocking on its stdin. At hand-over the
engine renames the container after the run, moves the member's output directory to the run's,
and writes the run's command and environment to the waiter's stdin. The waiter runs the
command's `-c` program in its own process (or `execve`s the command, see WAITER), so from then
on the container is the container an unpooled run gets (same process, limits and mounts); it
is removed after the run like any other.

What the pool key covers is everything of `containers.create()` except the run's command, its
environment and its run-id label, so a member is only ever handed to a run that would have been
created with the same options (`pool_key`). Secrets and parameters reach the container only at
hand-over, through stdin: they are not in `docker inspect` of a pooled run (they are in an
unpooled one's `Config.Env`).

Single-use and crash-safe:
- The engine holds each idle member's stdin attached. When the engine process dies, Docker
  closes that stdin, the waiter reads EOF and exits with `UNUSED_EXIT_CODE`; any engine's sweep
  (`WarmPool.sweep`, at start and every `SWEEP_SECONDS`) removes exited idle members of this
  installation (`fastflow.scope`) and their output directories. Idle members of another live
  engine sharing the daemon are left alone.
- A renamed member (`fastflow-run-<run id>-<hand-over ms>`) whose engine died before writing the
  command exits the same way with an empty log: `DockerExecutor.reattach` sees a run that never
  started and the run goes back to the queue (never twice: the command was not sent).
- A member is checked (inspected) before it is handed out; a broken one is removed and the
  next one, or an unpooled start, is used. The pool never delays a run: an empty pool means
  the run is created and started exactly as without one, and refilling happens in the pool's
  own thread.

Sizing: `FASTFLOW_DOCKER_POOL_SIZE` members in all (0: no pool), at most
`FASTFLOW_DOCKER_POOL_PER_PIPELINE` per key; a key is kept filled while its pipeline had a run in
the last `FASTFLOW_DOCKER_POOL_IDLE_SECONDS`, and a member idle that long is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import marshal
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from docker.errors import NotFound
from docker.models.containers import Container

from fastflow_site.datadir import private_dir
from runs_app.engine.outputs import output_dir_for
from runs_app.logs import parse_timestamp

logger = logging.getLogger(__name__)

LABEL_POOL = "fastflow.pool"  # the member's pool key (a hash of its creation options)
POOL_PREFIX = "fastflow-pool-"  # an idle member's container name
RUN_PREFIX = "fastflow-run-"  # a handed-over member: fastflow-run-<run id>-<hand-over ms>
UNUSED_EXIT_CODE = 75  # the waiter's exit when its stdin closed before a command arrived
SWEEP_SECONDS = 30.0
WAKE_SECONDS = 1.0  # how often the pool thread looks at idle timeouts without being woken
SLOT_PREFIX = ".pool-"  # a member's output directory, beside the runs' (same filesystem)

# The waiter: the run's own interpreter, started with the run's flags (`-u`), blocking on stdin
# for the order: a length line, then a marshal of {"argv", "env", "here"} (marshal is built in:
# nothing is imported for it, and its format 4 is read by every Python 3 since 3.4). The run's
# variables are laid over the container's own (the image's, Docker's HOSTNAME), as Docker lays
# `Env` over the image's. `here`: argv is this interpreter with `-u -c <program> [args]`, so the
# program runs in this process exactly as `python -u -c` would run it (its `__main__`,
# `sys.argv == ['-c', ...]`), saving a second interpreter start; unless a PYTHON* variable
# differs from the waiter's, since those act at interpreter start. Otherwise (uv run, other
# flags) it execs argv.
WAITER = f"""\
import marshal, os, sys
def _fastflow_order():
    size = sys.stdin.buffer.readline()
    if not size.endswith(b"\\n"):
        sys.exit({UNUSED_EXIT_CODE})
    data = sys.stdin.buffer.read(int(size))
    if len(data) != int(size):
        sys.exit({UNUSED_EXIT_CODE})
    order = marshal.loads(data)
    env = dict(os.environ)
    env.update(order["env"])
    argv = order["argv"]
    names = {{k for k in (*env, *os.environ) if k.startswith("PYTHON")}}
    if not order["here"] or any(env.get(k) != os.environ.get(k) for k in names):
        os.execvpe(argv[0], argv, env)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["-c", *argv[4:]]
    return compile(argv[3], "<string>", "exec")
_fastflow_code = _fastflow_order()
del _fastflow_order, marshal
exec(_fastflow_code)
"""


class HandOverFailed(Exception):
    """The member could not be handed to the run (it is removed; start the run unpooled)."""


@dataclass
class Member:
    container: Container
    stdin: Any  # the attached stdin socket (docker-py's SocketIO over the hijacked connection)
    key: str
    slot: Path  # its output directory until hand-over
    created: float = field(default_factory=time.monotonic)


def pool_key(options: dict[str, Any]) -> str:
    """What a member must share with the run it is handed to: every creation option except the
    command, the environment and the run's own labels (`options` is the template, stripped of
    those and of the output directory's mount by the executor)."""
    blob = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_container_name(run_id: str, handed_at: datetime) -> str:
    return f"{RUN_PREFIX}{run_id}-{int(handed_at.timestamp() * 1000)}"


def parse_run_container_name(name: str) -> tuple[str, datetime] | None:
    """(run id, hand-over time) of a handed-over member's name, None for any other name."""
    if not name.startswith(RUN_PREFIX):
        return None
    run_id, _, millis = name.removeprefix(RUN_PREFIX).rpartition("-")
    if not run_id or not millis.isdigit():
        return None
    return run_id, datetime.fromtimestamp(int(millis) / 1000, tz=UTC)


def slots_dir() -> Path:
    """Beside the runs' output directories: a member's is renamed to its run's at hand-over,
    which must stay on one filesystem."""
    return output_dir_for("pool").parent


def _stale(container: Container) -> bool:
    """An idle member older than twice the idle timeout: its owner would have removed it, so
    it has none that works (a hung engine, a waiter whose stdin Docker never closed)."""
    try:
        started = parse_timestamp(container.attrs["State"]["StartedAt"])
    except (KeyError, ValueError):
        return False
    age = (datetime.now(UTC) - started).total_seconds()
    return age > 2 * settings.FASTFLOW_DOCKER_POOL_IDLE_SECONDS + SWEEP_SECONDS


class WarmPool:
    """The Docker executor's pool. Thread-safe: `take` and `hand_over` are called from run
    worker threads; members are created and expired in the pool's own thread."""

    def __init__(
        self,
        *,
        client: Callable[[], Any],
        scope: Callable[[], str],
        mount_source: Callable[[Path], str],
        output_mount: Callable[[str], Any],
    ) -> None:
        self._client = client
        self._scope = scope
        self._mount_source = mount_source
        self._output_mount = output_mount  # host path → the Mount at /fastflow
        self._lock = threading.Lock()
        self._idle: dict[str, list[Member]] = {}
        self._wanted: dict[str, tuple[dict[str, Any], float]] = {}  # key → (template, last demand)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._swept = 0.0

    # --- settings ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return settings.FASTFLOW_DOCKER_POOL_SIZE

    @property
    def enabled(self) -> bool:
        return self.size > 0

    # --- run side ---------------------------------------------------------------------------

    def take(self, key: str, template: dict[str, Any]) -> Member | None:
        """An idle, running member for `key`, or None; either way the key is kept filled from
        now on (for FASTFLOW_DOCKER_POOL_IDLE_SECONDS). Never blocks on creating one."""
        self.ensure_started()
        with self._lock:
            self._wanted[key] = (template, time.monotonic())
            candidates = self._idle.get(key, [])
            taken = candidates.pop(0) if candidates else None
        self._wake.set()  # refill (or create the first members) in the background
        while taken is not None:
            if self._alive(taken):
                return taken
            logger.warning("pool member %s is broken; removed", taken.container.short_id)
            self._discard(taken)
            with self._lock:
                candidates = self._idle.get(key, [])
                taken = candidates.pop(0) if candidates else None
        return None

    def hand_over(
        self, member: Member, *, run_id: str, output_dir: Path | None, order: dict[str, Any]
    ) -> datetime:
        """Give the member to the run: rename it after the run, move its output directory to the
        run's, then send the command. Returns the hand-over time (the run's start). On failure
        the member is removed and HandOverFailed raised: nothing of the run ran."""
        handed_at = datetime.now(UTC)
        try:
            member.container.rename(run_container_name(run_id, handed_at))
            if output_dir is not None:
                with contextlib.suppress(FileNotFoundError):
                    output_dir.rmdir()  # the empty directory the dispatcher may have made
                private_dir(output_dir.parent)
                os.rename(member.slot, output_dir)
            data = marshal.dumps(order, 4)
            raw = member.stdin._sock
            raw.sendall(b"%d\n" % len(data) + data)
            raw.shutdown(socket.SHUT_WR)
        except Exception as exc:
            self._discard(member)
            raise HandOverFailed(str(exc)) from exc
        finally:
            self._close_stdin(member)
        return handed_at

    # --- the pool's thread ------------------------------------------------------------------

    def ensure_started(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="docker-pool", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop refilling and remove this process's idle members (the engine is stopping)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        with self._lock:
            members = [m for members in self._idle.values() for m in members]
            self._idle.clear()
            self._wanted.clear()
        for member in members:
            self._discard(member)

    def idle_count(self, key: str | None = None) -> int:
        with self._lock:
            if key is not None:
                return len(self._idle.get(key, []))
            return sum(len(members) for members in self._idle.values())

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now - self._swept >= SWEEP_SECONDS:
                    self._swept = now
                    self.sweep()
                self._expire()
                self._refill()
            except Exception:
                # One failing Docker call must not end the pool; runs start unpooled meanwhile.
                logger.exception("warm pool maintenance failed")
                self._stop.wait(WAKE_SECONDS)
            self._wake.wait(WAKE_SECONDS)
            self._wake.clear()

    def _expire(self) -> None:
        idle_for = settings.FASTFLOW_DOCKER_POOL_IDLE_SECONDS
        now = time.monotonic()
        expired: list[Member] = []
        with self._lock:
            for key, (_, last) in list(self._wanted.items()):
                if now - last > idle_for:
                    del self._wanted[key]
            for key, members in list(self._idle.items()):
                keep = [m for m in members if now - m.created <= idle_for and key in self._wanted]
                expired += [m for m in members if m not in keep]
                self._idle[key] = keep
        for member in expired:
            self._discard(member)

    def _refill(self) -> None:
        """Create members, one at a time, for the most recently wanted keys first, until each
        has FASTFLOW_DOCKER_POOL_PER_PIPELINE or the pool is full. A full pool makes room for a
        key wanted more recently than another key's member."""
        per_key = settings.FASTFLOW_DOCKER_POOL_PER_PIPELINE
        while not self._stop.is_set():
            with self._lock:
                wanted = sorted(self._wanted.items(), key=lambda item: -item[1][1])
                short = [(k, t) for k, (t, _) in wanted if len(self._idle.get(k, [])) < per_key]
                if not short:
                    return
                key, template = short[0]
                evict = None
                if sum(len(m) for m in self._idle.values()) >= self.size:
                    evict = self._evictable(key)
                    if evict is None:
                        return  # full of members of keys wanted at least as recently
            if evict is not None:
                self._discard(evict)
            member = self._create(key, template)
            if member is None:
                return  # Docker refused: try again on the next wake
            with self._lock:
                if key in self._wanted and not self._stop.is_set():
                    self._idle.setdefault(key, []).append(member)
                    member = None
            if member is not None:
                self._discard(member)

    def _evictable(self, key: str) -> Member | None:
        """(Under the lock.) The oldest member of the least recently wanted other key, if that
        key was wanted less recently than `key`."""
        last_of = {k: last for k, (_, last) in self._wanted.items()}
        others = [k for k, members in self._idle.items() if members and k != key]
        if not others:
            return None
        victim = min(others, key=lambda k: last_of.get(k, 0.0))
        if last_of.get(victim, 0.0) >= last_of.get(key, 0.0):
            return None
        return self._idle[victim].pop(0)

    def _create(self, key: str, template: dict[str, Any]) -> Member | None:
        name = f"{POOL_PREFIX}{uuid.uuid4().hex[:20]}"
        slot = slots_dir() / f"{SLOT_PREFIX}{name}"
        options = dict(template)
        options["labels"] = {**template["labels"], LABEL_POOL: key}
        options["mounts"] = list(template["mounts"])
        options["command"] = [template["command"][0], "-u", "-c", WAITER]
        if template.get("_output"):
            private_dir(slot.parent)
            slot.mkdir(mode=0o700)
            os.chmod(slot, 0o777)  # noqa: S103 - the run's uid writes here (as outputs.py)
            options["mounts"].append(self._output_mount(self._mount_source(slot)))
        options.pop("_output", None)
        options.update(stdin_open=True, detach=False, environment={}, name=name)
        container = None
        try:
            container = self._client().containers.create(**options)
            # Attached before it starts: an engine dying between the two leaves a container
            # that never started (swept), not a started waiter nobody will ever close.
            stdin = container.attach_socket(params={"stdin": 1, "stream": 1})
            container.start()
        except Exception as exc:
            logger.warning("could not create a pool member: %s", exc)
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            shutil.rmtree(slot, ignore_errors=True)
            return None
        return Member(container=container, stdin=stdin, key=key, slot=slot)

    def sweep(self) -> list[str]:
        """Remove this installation's idle members that ended (their engine is gone) and output
        directories of members that no longer exist. Returns the removed container ids."""
        client = self._client()
        filters = {"label": [f"{LABEL_POOL}", f"fastflow.scope={self._scope()}"]}
        containers = client.containers.list(all=True, filters=filters, ignore_removed=True)
        removed = []
        names = set()
        with self._lock:
            ours = {m.container.id for members in self._idle.values() for m in members}
        for container in containers:
            names.add(container.name)
            if (
                container.name.startswith(POOL_PREFIX)
                and container.id not in ours
                and (container.status in ("exited", "dead", "created") or _stale(container))
            ):
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
                names.discard(container.name)
                removed.append(container.id)
        with self._lock:
            names |= {m.container.name for members in self._idle.values() for m in members}
        folder = slots_dir()
        if folder.is_dir():
            for slot in folder.glob(f"{SLOT_PREFIX}*"):
                if slot.name.removeprefix(SLOT_PREFIX) not in names:
                    shutil.rmtree(slot, ignore_errors=True)
        return removed

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _alive(member: Member) -> bool:
        try:
            member.container.reload()
        except Exception:  # noqa: BLE001 - gone or unreachable: not to be handed out
            return False
        return member.container.status == "running"

    def _discard(self, member: Member) -> None:
        self._close_stdin(member)
        with contextlib.suppress(Exception):
            member.container.remove(force=True)
        shutil.rmtree(member.slot, ignore_errors=True)

    @staticmethod
    def _close_stdin(member: Member) -> None:
        # The raw socket too: closing docker-py's wrapper alone leaves the connection (and so
        # the container's stdin) open.
        with contextlib.suppress(Exception):
            member.stdin._sock.close()
        with contextlib.suppress(Exception):
            member.stdin.close()
