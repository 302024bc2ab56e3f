"""A run's resource samples: one JSON object per line in its metrics file.

Line format: `{"ts": "2026-11-27T22:45:01.123Z", "cpu_percent": 37.5, "memory_bytes": 52428800}`.
`cpu_percent` is relative to one core (200 = two cores busy), like `docker stats`; memory is the
resident set without page cache. Soft-limit breaches are noted once per kind in the run's log.
A sample that cannot be written (a full disk) is dropped and counted (`samples_dropped`); the
file never holds half a sample.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from fastflow_site.datadir import private_open
from runs_app.engine.logstream import LogWriter
from runs_app.logs import append_whole, format_timestamp
from runs_app.outcome import Outcome, format_bytes, outcome_message

if TYPE_CHECKING:
    from runs_app.engine.base import RunSpec


class MetricsRecorder:
    def __init__(
        self,
        path: Path,
        *,
        log: LogWriter,
        cpu_soft_limit: float | None = None,
        mem_soft_limit: int | None = None,
    ) -> None:
        self.path = path
        # After an engine restart the file already holds samples: the peak includes them.
        self.peak_memory_bytes: int | None = _recorded_peak(path)
        self.samples = 0
        self.samples_dropped = 0
        self._log = log
        self._cpu_soft_limit = cpu_soft_limit
        self._mem_soft_limit = mem_soft_limit
        self._lock = threading.Lock()
        # 0600 in 0700 folders; unbuffered: a failed write leaves nothing behind.
        self._file = private_open(path, "ab", buffering=0)
        self._size = self._file.seek(0, 2)
        if _ends_mid_line(path):
            self._append(b"\n")  # never glue a new sample onto a line cut short by a crash

    def observe_memory(self, memory_bytes: int) -> None:
        """Keep the peak from readings that are not written as samples."""
        with self._lock:
            if self.peak_memory_bytes is None or memory_bytes > self.peak_memory_bytes:
                self.peak_memory_bytes = memory_bytes

    def record(self, *, cpu_percent: float, memory_bytes: int) -> None:
        self.observe_memory(memory_bytes)
        sample = {
            "ts": format_timestamp(datetime.now(UTC)),
            "cpu_percent": round(cpu_percent, 2),
            "memory_bytes": int(memory_bytes),
        }
        with self._lock:
            if self._file.closed:
                return
            if self._append((json.dumps(sample) + "\n").encode()):
                self.samples += 1
            else:
                self.samples_dropped += 1
        self._check_soft_limits(cpu_percent, memory_bytes)

    def _append(self, data: bytes) -> bool:
        try:
            append_whole(self._file, data, size=self._size)
        except OSError:
            return False  # a full disk costs samples, never the run
        self._size += len(data)
        return True

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def _check_soft_limits(self, cpu_percent: float, memory_bytes: int) -> None:
        if self._mem_soft_limit and memory_bytes > self._mem_soft_limit:
            self._log.note(
                f"memory soft limit exceeded: {format_bytes(memory_bytes)} used, "
                f"limit {format_bytes(self._mem_soft_limit)}",
                once="mem_soft_limit",
            )
        if self._cpu_soft_limit and cpu_percent > self._cpu_soft_limit * 100:
            self._log.note(
                f"CPU soft limit exceeded: {cpu_percent / 100:.2f} cores used, "
                f"limit {self._cpu_soft_limit:g} cores",
                once="cpu_soft_limit",
            )


class DockerStatsSampler:
    """Turns a Docker stats stream (about one reading a second) into samples every `interval`."""

    def __init__(self, recorder: MetricsRecorder, *, interval: float) -> None:
        self._recorder = recorder
        self._interval = interval
        self._last_record: float | None = None

    def consume(self, readings: Iterable[dict], stop: threading.Event) -> None:
        for reading in readings:
            if stop.is_set():
                return
            memory = docker_memory_bytes(reading)
            if memory is None:
                continue  # the container is not running (yet / any more)
            self._recorder.observe_memory(memory)
            now = time.monotonic()
            if self._last_record is None or now - self._last_record >= self._interval:
                self._last_record = now
                self._recorder.record(cpu_percent=docker_cpu_percent(reading), memory_bytes=memory)


def docker_cpu_percent(reading: dict) -> float:
    cpu = reading.get("cpu_stats") or {}
    previous = reading.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        previous.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    cores = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [1])
    return cpu_delta / system_delta * cores * 100


def docker_memory_bytes(reading: dict) -> int | None:
    memory = reading.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    stats = memory.get("stats") or {}
    # What `docker stats` shows: usage minus inactive page cache (cgroup v1 and v2 names).
    cache = stats.get("total_inactive_file", stats.get("inactive_file", 0))
    return max(int(usage) - int(cache), 0)


PRIME_DELAY_SECONDS = 1.0


class ProcessTreeSampler:
    """Samples CPU and RSS over a process and all its descendants (local executor)."""

    def __init__(self, recorder: MetricsRecorder, root_pid: int, *, interval: float) -> None:
        self._recorder = recorder
        self._root_pid = root_pid
        self._interval = interval
        self._known: dict[int, psutil.Process] = {}

    def run(self, stop: threading.Event) -> None:
        # Prime cpu_percent() (its first call always says 0) a moment after the start, not at
        # it: walking the process table then competes with the interpreter's start-up, and a
        # run shorter than that needs no samples at all.
        if stop.wait(min(PRIME_DELAY_SECONDS, self._interval / 2)):
            return
        self._sample(record=False)
        while not stop.wait(self._interval):
            self._sample(record=True)

    def _sample(self, *, record: bool) -> None:
        try:
            root = psutil.Process(self._root_pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        cpu = 0.0
        memory = 0
        alive: dict[int, psutil.Process] = {}
        for proc in tree:
            # Reuse the Process objects: cpu_percent() measures since the previous call on it.
            proc = self._known.get(proc.pid, proc)
            try:
                cpu += proc.cpu_percent(None)
                memory += proc.memory_info().rss
            except psutil.Error:
                continue
            alive[proc.pid] = proc
        self._known = alive
        if record:
            self._recorder.record(cpu_percent=cpu, memory_bytes=memory)


def run_writers(
    spec: RunSpec, *, ready_token: str, started_at: datetime | None
) -> tuple[LogWriter, MetricsRecorder]:
    """A run's log writer and metrics recorder, as every container executor opens them (the
    files of `spec`, its masking, log cap and soft limits)."""
    log = LogWriter(
        spec.log_file,
        mask_values=spec.mask_values,
        max_bytes=spec.log_max_bytes,
        ready_token=ready_token,
        started_at=started_at,
    )
    metrics = MetricsRecorder(
        spec.metrics_file,
        log=log,
        cpu_soft_limit=spec.cpu_soft_limit,
        mem_soft_limit=spec.mem_soft_limit,
    )
    return log, metrics


def outcome_complete(
    outcome: Outcome, *, spec: RunSpec, log: LogWriter, metrics: MetricsRecorder
) -> Outcome:
    """Fill in what every container executor reports once the writers are closed: what of the
    log was lost, the recorded error (unless the executor set one) and the peak memory."""
    outcome.log_loss = log.loss_summary()
    if not outcome.error:
        outcome.error = outcome_message(
            outcome, timeout=spec.timeout, mem_limit=spec.mem_hard_limit
        )
    outcome.peak_memory_bytes = metrics.peak_memory_bytes
    return outcome


def run_in_thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def _recorded_peak(path: Path) -> int | None:
    if not path.is_file():
        return None
    peak = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            value = json.loads(line).get("memory_bytes")
        except (json.JSONDecodeError, AttributeError):
            continue  # e.g. a line cut short by a crash
        if isinstance(value, int) and (peak is None or value > peak):
            peak = value
    return peak


def _ends_mid_line(path: Path) -> bool:
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return False
        fh.seek(size - 1)
        return fh.read(1) != b"\n"
