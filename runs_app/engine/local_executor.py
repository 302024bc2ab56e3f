"""Runs a pipeline as a local subprocess (development, machines without Docker).

Same contract as the Docker executor, with weaker isolation: the pipeline runs as the engine's
user, in its own session/process group (so cancel and timeout kill every process it started),
with the pipeline folder as working directory and a clean environment. stdout and stderr are
two pipes, so every log line carries the stream it came from.

Interpreter: a pipeline with requirements runs the environment the warm-up prepared
(`uvcache.py`; its files read-only, which keeps accidents out but is no isolation from a
process of the same user); one without runs the base interpreter directly. Until the warm-up
has prepared the environment, a run installs its requirements with `uv run` into a cache in its
own temporary home, never into the shared one. A notebook pipeline runs the notebook runner
instead of the wrapper, in an environment that also holds the runner's packages
(`RunSpec.extra_requirements`).

Memory: `mem_hard_limit` becomes RLIMIT_AS (virtual address space) set by the wrapper right
before `main.py` runs, for user code only: uv (a multi-threaded Rust program that reserves a lot
of virtual memory) and interpreter start-up are not counted. Allocating beyond it raises
`MemoryError`, reported as an OOM (`Outcome.oom_killed`, exit code 137). Virtual memory is larger
than resident memory, so libraries that reserve big arenas (numpy/BLAS threads) need a limit
with headroom. `cpu_hard_limit` is not enforced locally.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil
import uv
from django.conf import settings

from runs_app.engine import wrapper
from runs_app.engine.base import Execution, Executor, InfrastructureError, RunSpec
from runs_app.engine.logstream import LogWriter, note_setup_failure
from runs_app.engine.metrics import MetricsRecorder, ProcessTreeSampler, run_in_thread
from runs_app.engine.outputs import ROUTE_FILE, output_dir_prepare
from runs_app.engine.uvcache import (
    COLD_HINT,
    COLD_NOTE,
    WARM_CREATE,
    WARM_INSTALL,
    WARM_RESOLVE,
    cold_with_args,
    env_build_dir,
    env_key,
    env_publish,
    env_ready,
    env_remove,
    make_read_only,
    uv_cache_dir,
    warm_install_args,
    warm_step_failed,
)
from runs_app.logs import STDERR, STDOUT
from runs_app.outcome import Outcome, format_bytes, outcome_message

WAKE_INTERVAL = 0.25
DRAIN_TIMEOUT = 10.0
READ_SIZE = 64 * 1024
# Passed through from the engine's environment so uv (and the pipeline) can reach the package
# index the way the engine's host does; the run's own env overrides them.
PASSTHROUGH_ENV = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_NATIVE_TLS",
    "UV_OFFLINE",
    "LANG",
    "LC_ALL",
    "TZ",
)


def uv_binary() -> str:
    try:
        return uv.find_uv_bin()
    except FileNotFoundError as exc:
        raise InfrastructureError(
            f"the uv binary of the engine's environment is missing: {exc}"
        ) from exc


def local_python(python_version: str) -> str:
    """The interpreter for `--python`: the engine's own base interpreter (never its virtualenv,
    whose packages must not leak into pipelines) when the versions match, else the version for
    uv to find on PATH."""
    if python_version == f"{sys.version_info.major}.{sys.version_info.minor}":
        base = getattr(sys, "_base_executable", "") or sys.executable
        if Path(base).is_file():
            return base
    return python_version


def clean_path() -> str:
    venv_bin = str(Path(sys.prefix) / "bin") if sys.prefix != sys.base_prefix else None
    parts = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p]
    return os.pathsep.join(p for p in parts if p != venv_bin)


def local_env(
    *,
    run_id: str,
    pipeline_name: str,
    user_env: dict[str, str],
    home: Path,
    uv_cache: Path | None = None,
    venv: Path | None = None,
) -> dict:
    """Engine variables win over the run's environment, which wins over the pass-through.

    `uv_cache`: the cache uv may write (the shared one for warm-ups only; a run's own in its
    home otherwise). `venv`: the prepared environment whose bin/ goes first on PATH."""
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update(user_env)
    env.update(
        {
            "PATH": clean_path() if venv is None else f"{venv / 'bin'}{os.pathsep}{clean_path()}",
            "HOME": str(home),
            "TMPDIR": str(home),
            "PYTHONUNBUFFERED": "1",
            "UV_CACHE_DIR": str(uv_cache or home / "uv-cache"),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
            "FASTFLOW_RUN_ID": run_id,
            "FASTFLOW_PIPELINE": pipeline_name,
        }
    )
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    if settings.FASTFLOW_RUNNER_CA_BUNDLE:
        env["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"] = settings.FASTFLOW_RUNNER_CA_BUNDLE
    return env


def local_uv_command(
    *,
    pipeline_dir: Path,
    python_version: str,
    requirements: bool,
    extra_requirements: tuple[str, ...] = (),
) -> list[str]:
    command = [uv_binary(), "run", "--no-project", "--python", local_python(python_version)]
    return command + cold_with_args(
        requirements=str(pipeline_dir / "requirements.txt") if requirements else None,
        extra_requirements=extra_requirements,
    )


def local_env_key(
    *, pipeline_dir: Path, python_version: str, extra_requirements: tuple[str, ...] = ()
) -> str | None:
    runtime = f"{uv_version()} {local_python(python_version)}"
    return env_key(
        pipeline_dir=pipeline_dir,
        python_version=python_version,
        runtime_id=runtime,
        extra_requirements=extra_requirements,
    )


def local_run_command(spec: RunSpec, app_dir: Path) -> tuple[list[str], Path | None, str]:
    """The interpreter command (without the `-u -c` program), the prepared environment if
    one is used, and "prepared" / "cold" / "none" (like the Docker executor's label)."""
    if spec.needs_environment:
        key = local_env_key(
            pipeline_dir=app_dir,
            python_version=spec.python_version,
            extra_requirements=spec.extra_requirements,
        )
        prepared = env_ready("local", key)
        if prepared is not None:
            return [str(prepared / "bin" / "python")], prepared, "prepared"
        command = local_uv_command(
            pipeline_dir=app_dir,
            python_version=spec.python_version,
            requirements=spec.has_requirements,
            extra_requirements=spec.extra_requirements,
        )
        return [*command, "python"], None, "cold"
    interpreter = local_python(spec.python_version)
    if Path(interpreter).is_file():
        return [interpreter], None, "none"
    # Another version than the engine's: uv finds it on PATH (and never downloads one).
    command = local_uv_command(
        pipeline_dir=app_dir, python_version=spec.python_version, requirements=False
    )
    return [*command, "python"], None, "none"


def _program(spec: RunSpec, app_dir: Path) -> list[str]:
    """The `-u -c ...` arguments after the interpreter: the wrapper, or a notebook's runner."""
    entry = "main.ipynb" if spec.notebook else "main.py"
    if not (app_dir / entry).is_file():
        raise InfrastructureError(f"{app_dir / entry} does not exist")
    if spec.notebook:
        return wrapper.notebook_program(
            app_dir=str(app_dir),
            output_dir=str(spec.output_dir) if spec.output_dir else None,
            cells=spec.cells,
            python_version=spec.python_version,
            memory_limit=spec.mem_hard_limit,
        )
    code = wrapper.wrapper_code(
        app_dir=str(app_dir), python_version=spec.python_version, memory_limit=spec.mem_hard_limit
    )
    return ["-u", "-c", code]


def _warm_step(
    what: str, command: list[str], cwd: str, env: dict, wait: float, timeout: float
) -> str:
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(wait, 1),
        )
    except subprocess.TimeoutExpired:
        return f"{what} timed out after {timeout:g} s"
    except OSError as exc:
        raise InfrastructureError(f"{what} could not start: {exc}") from exc
    if done.returncode != 0:
        return warm_step_failed(what, done.returncode, done.stdout + done.stderr)
    return ""


def _owned_by_fastflow(pid: int, run_id: str | None = None) -> bool:
    """Whether `pid` is still a process we started (pids get reused after a restart)."""
    try:
        environ = psutil.Process(pid).environ()
    except psutil.Error:
        return False
    if run_id is None:
        return "FASTFLOW_RUN_ID" in environ
    return environ.get("FASTFLOW_RUN_ID") == run_id


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LocalExecutor(Executor):
    name = "local"
    survives_engine_restart = False  # see reattach()
    # Memory as RLIMIT_AS on user code. CPU, processes (RLIMIT_NPROC counts all of the user's)
    # and /tmp (a host directory) cannot be limited per run without a container.
    enforced_limits = frozenset({"memory_bytes"})

    def check(self) -> None:
        uv_binary()

    def start(self, spec: RunSpec) -> LocalExecution:
        app_dir = Path(spec.pipeline_dir).resolve()
        program = _program(spec, app_dir)
        command, venv, prepared = local_run_command(spec, app_dir)
        home = Path(tempfile.mkdtemp(prefix=f"fastflow-{spec.run_id}-"))
        env = local_env(
            run_id=spec.run_id,
            pipeline_name=spec.pipeline_name,
            user_env=spec.env,
            home=home,
            venv=venv,
        )
        if spec.output_dir is not None:
            output_dir_prepare(spec.output_dir, world_writable=False)
            env["FASTFLOW_ROUTE_FILE"] = str(spec.output_dir / ROUTE_FILE)
        started_at = datetime.now(UTC)
        try:
            process = subprocess.Popen(
                [*command, *program],
                cwd=app_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: cancel kills the whole tree
                bufsize=0,
            )
        except OSError as exc:
            shutil.rmtree(home, ignore_errors=True)
            raise InfrastructureError(f"could not start the local process: {exc}") from exc
        return LocalExecution(
            spec=spec,
            process=process,
            started_at=started_at,
            home=home,
            cold=prepared == "cold",
        )

    def warm(
        self,
        *,
        pipeline_name: str,
        pipeline_dir: Path,
        python_version: str,
        timeout: float,
        extra_requirements: tuple[str, ...] = (),
    ) -> str:
        """Build the pipeline's environment with the engine's uv and interpreter, in a
        temporary home (the lock file goes there, never into the pipeline folder); published
        only when every step succeeded, then made read-only."""
        pipeline_dir = Path(pipeline_dir)
        # Of the requirements as they are now: an edit during the warm-up makes another key.
        key = local_env_key(
            pipeline_dir=pipeline_dir,
            python_version=python_version,
            extra_requirements=extra_requirements,
        )
        if key is None or env_ready(self.name, key) is not None:
            return ""  # no requirements, or these were prepared already
        build = env_build_dir(self.name, key)
        has_requirements = (pipeline_dir / "requirements.txt").is_file()
        requirements = str(pipeline_dir / "requirements.txt") if has_requirements else None
        python = local_python(python_version)
        try:
            with tempfile.TemporaryDirectory(prefix=f"fastflow-warmup-{pipeline_name}-") as tmp:
                env = local_env(
                    run_id=f"warmup-{uuid.uuid4()}",
                    pipeline_name=pipeline_name,
                    user_env={},
                    home=Path(tmp),
                    uv_cache=uv_cache_dir(self.name),
                )
                lock = str(Path(tmp) / "requirements.lock")
                install = warm_install_args(
                    python=str(build / "bin" / "python"),
                    requirements=requirements,
                    extra_requirements=extra_requirements,
                )
                steps = [
                    (WARM_CREATE, ["venv", "--relocatable", "--python", python, str(build)]),
                    (WARM_INSTALL, install),
                ]
                if requirements:
                    resolve = ["pip", "compile", "--python", python, requirements, "-o", lock]
                    steps.insert(0, (WARM_RESOLVE, resolve))
                deadline = time.monotonic() + timeout
                for what, args in steps:
                    failure = _warm_step(
                        what, [uv_binary(), *args], tmp, env, deadline - time.monotonic(), timeout
                    )
                    if failure:
                        return failure
            make_read_only(build)
            env_publish(build, self.name, key)
        finally:
            if build.exists():
                env_remove(build)
        return ""

    def reattach(self, spec: RunSpec, handle_id: str) -> None:
        """A subprocess's pipes die with the engine that started it, so it cannot be adopted.
        If it still runs, it is killed (whole process group) so the run can be failed cleanly."""
        try:
            pid = int(handle_id)
        except ValueError:
            return None
        if _owned_by_fastflow(pid, spec.run_id):
            _kill_group(pid, signal.SIGKILL)
            log = LogWriter(Path(spec.log_file), max_bytes=spec.log_max_bytes)
            log.note("the engine restarted: a local run cannot be re-attached; it was killed")
            log.close()
        return None

    def running_handles(self) -> dict[str, str]:
        # Local runs are not discoverable without scanning every process's environment, and
        # they cannot be re-attached anyway: recovery goes through reattach() with the pid
        # stored on the run, which kills a survivor.
        return {}

    def find_handle(self, run_id: str) -> str | None:
        """The process group leader whose environment carries this run's id (run ids are
        UUIDs, unique across installations): one scan of the engine user's processes, only
        when a run's engine died before recording the pid."""
        me = os.getuid()
        for process in psutil.process_iter(["pid", "uids"]):
            try:
                if process.info["uids"].real != me or os.getpgid(process.pid) != process.pid:
                    continue
                if process.environ().get("FASTFLOW_RUN_ID") == run_id:
                    return str(process.pid)
            except (psutil.Error, OSError):
                continue
        return None

    def remove_orphan(self, handle_id: str) -> None:
        with contextlib.suppress(ValueError):
            pid = int(handle_id)
            if _owned_by_fastflow(pid):
                _kill_group(pid, signal.SIGKILL)


class LocalExecution(Execution):
    def __init__(
        self,
        *,
        spec: RunSpec,
        process: subprocess.Popen,
        started_at: datetime,
        home: Path,
        cold: bool = False,
    ) -> None:
        super().__init__(spec=spec, handle_id=str(process.pid))
        self._cold = cold
        self._process = process
        self._started_at = started_at
        self._home = home
        self._exited_at: datetime | None = None  # set by the reaper the moment wait() returns
        self._wake = threading.Event()
        self._writers: tuple[LogWriter, MetricsRecorder] | None = None

    def cancel(self) -> None:
        super().cancel()
        self._wake.set()

    def abandon(self) -> None:
        super().abandon()
        writers = self._writers
        if writers is not None:
            writers[0].abandon()
            writers[1].close()
        self._wake.set()

    def wait_for_outcome(self) -> Outcome:
        spec = self.spec
        log = LogWriter(
            spec.log_file,
            mask_values=spec.mask_values,
            max_bytes=spec.log_max_bytes,
            ready_token=wrapper.READY_TOKEN,
            started_at=self._started_at,
        )
        metrics = MetricsRecorder(
            spec.metrics_file,
            log=log,
            cpu_soft_limit=spec.cpu_soft_limit,
            mem_soft_limit=spec.mem_soft_limit,
        )
        self._writers = (log, metrics)
        if self.abandoned.is_set():
            log.abandon()
            metrics.close()
        if self._cold:
            log.note(COLD_NOTE, at=self._started_at)
        stop_sampling = threading.Event()
        outcome = Outcome(exit_code=None, uv_version=uv_version())
        try:
            readers = [
                threading.Thread(
                    target=self._read,
                    args=(log, stream, source),
                    name=f"logs-{source}-{spec.run_id}",
                    daemon=True,
                )
                for stream, source in (
                    (self._process.stdout, STDOUT),
                    (self._process.stderr, STDERR),
                )
            ]
            for reader in readers:
                reader.start()
            sampler = ProcessTreeSampler(
                metrics, self._process.pid, interval=settings.FASTFLOW_METRICS_INTERVAL_SECONDS
            )
            run_in_thread(lambda: sampler.run(stop_sampling), f"stats-{spec.run_id}")
            run_in_thread(self._reap, f"reap-{spec.run_id}")
            self._supervise(log, outcome)
            outcome.exit_code = self._process.wait()
            outcome.finished_at = self._exited_at or datetime.now(UTC)
            # Background processes the pipeline left behind would keep the pipes open.
            _kill_group(self._process.pid, signal.SIGKILL)
            deadline = time.monotonic() + DRAIN_TIMEOUT
            for reader in readers:
                reader.join(max(deadline - time.monotonic(), 0))
            outcome.oom_killed = (
                outcome.exit_code == wrapper.OOM_EXIT_CODE
                and bool(spec.mem_hard_limit)
                and not (outcome.timed_out or outcome.cancelled)
            )
            if log.ready_at is not None:
                outcome.setup_duration = max((log.ready_at - self._started_at).total_seconds(), 0)
            if outcome.oom_killed:
                limit = format_bytes(spec.mem_hard_limit or 0)
                log.note(f"out of memory: the pipeline exceeded its {limit} limit (RLIMIT_AS)")
            if outcome.exit_code and self._cold:
                log.note(COLD_HINT)
            note_setup_failure(outcome, log)
        finally:
            stop_sampling.set()
            _kill_group(self._process.pid, signal.SIGKILL)
            log.close()
            metrics.close()
        outcome.log_loss = log.loss_summary()
        if not outcome.error:  # else the cause note_setup_failure found
            outcome.error = outcome_message(
                outcome, timeout=spec.timeout, mem_limit=spec.mem_hard_limit
            )
        outcome.peak_memory_bytes = metrics.peak_memory_bytes
        return outcome

    def cleanup(self) -> None:
        shutil.rmtree(self._home, ignore_errors=True)

    def _reap(self) -> None:
        self._process.wait()
        self._exited_at = datetime.now(UTC)
        self._wake.set()

    @staticmethod
    def _read(log: LogWriter, stream, source: str) -> None:  # noqa: ANN001 - a pipe
        fd = stream.fileno()
        try:
            while chunk := os.read(fd, READ_SIZE):
                log.feed(chunk, source=source)
        finally:
            stream.close()

    def _supervise(self, log: LogWriter, outcome: Outcome) -> None:
        deadline = time.monotonic() + self.spec.timeout if self.spec.timeout else None
        while self._process.poll() is None:
            if self.abandoned.is_set():
                # Its new owner could not adopt a local process and failed the run: stop it.
                _kill_group(self._process.pid, signal.SIGKILL)
                return
            if self.cancel_event.is_set():
                grace = settings.FASTFLOW_CANCEL_GRACE_SECONDS
                log.note(
                    f"cancelled: stopping the process group (SIGTERM, SIGKILL after {grace:g} s)"
                )
                outcome.cancelled = True
                _kill_group(self._process.pid, signal.SIGTERM)
                try:
                    self._process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _kill_group(self._process.pid, signal.SIGKILL)
                return
            remaining = deadline - time.monotonic() if deadline else WAKE_INTERVAL
            if remaining <= 0:
                log.note(f"timeout after {self.spec.timeout:g} s: process group killed")
                outcome.timed_out = True
                _kill_group(self._process.pid, signal.SIGKILL)
                return
            self._wake.wait(min(remaining, WAKE_INTERVAL))
            self._wake.clear()


_uv_version_cache: list[str] = []


def uv_version() -> str:
    if not _uv_version_cache:
        try:
            output = subprocess.run(
                [uv_binary(), "--version"], capture_output=True, text=True, timeout=30
            ).stdout
            _uv_version_cache.append(output.split()[1])
        except (OSError, IndexError, subprocess.SubprocessError, InfrastructureError):
            return ""
    return _uv_version_cache[0]
