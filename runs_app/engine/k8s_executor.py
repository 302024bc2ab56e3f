"""Runs a pipeline as a Kubernetes Job: one locked-down pod per run (the Job: `k8s_spec.py`).

The engine talks only to the API server (`k8s_api.py`): it creates the Job, waits for its pod
to start (failing the run with the scheduler's or the kubelet's reason when it stays Pending
too long), follows the container's log with timestamps into the run's `LogWriter` (the relay,
`k8s_relay.py`, keeps stdout and stderr apart), samples the metrics API into the
`MetricsRecorder`, reads the exit code and `OOMKilled` from the container status and deletes
the Job once the run is recorded. Log and metrics files are written exactly as for Docker runs,
through `runs_app/logs.py`'s paths, so whatever stores those files stores these too.

Jobs are labelled with the run id and this installation's scope, so an engine that restarted
finds them again (`running_handles`, `reattach`) and resumes the log where the file ends.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from runs_app.engine import wrapper
from runs_app.engine.base import Execution, Executor, InfrastructureError, RunSpec
from runs_app.engine.docker_executor import LABEL_ENV, LABEL_RUN_ID, installation_scope
from runs_app.engine.k8s_api import KubernetesApi, close_quietly, is_read_timeout, log_lines
from runs_app.engine.k8s_spec import (
    CONTAINER,
    PodSettings,
    job_manifest,
    job_name,
    scope_selector,
)
from runs_app.engine.k8s_status import (
    ended,
    job_failure,
    lost_reason,
    pending_reason,
    started_at,
)
from runs_app.engine.k8s_warmup import warm_with_jobs
from runs_app.engine.logstream import (
    MAX_LINE_BYTES,
    LogWriter,
    note_setup_failure,
    noted_ready,
    resume_point,
)
from runs_app.engine.metrics import MetricsRecorder, outcome_complete, run_writers
from runs_app.engine.outputs import output_dir_prepare
from runs_app.engine.uvcache import COLD_HINT, COLD_NOTE, env_key, env_ready
from runs_app.logs import STDERR, STDOUT, parse_timestamp
from runs_app.outcome import Outcome, format_bytes

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # how long to wait for the last log lines after the container ended
# Frame bytes of the relay: (source, whether the frame ends a line).
FRAMES = {b"o": (STDOUT, True), b"O": (STDOUT, False), b"e": (STDERR, True), b"E": (STDERR, False)}
NO_METRICS_NOTE = (
    "no CPU/memory samples: the cluster has no metrics API (metrics.k8s.io, e.g. "
    "metrics-server), so this run's metrics and peak memory are not recorded"
)


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_log_line(raw: bytes) -> tuple[datetime, str, bytes]:
    """One line of the followed log: its time (to the millisecond), source and data (with
    its newline when the frame ends a line). A line without a relay frame can only be the
    relay's own interpreter failing: it is kept, as stderr."""
    stamp, _, rest = raw.partition(b" ")
    try:
        at = _ms(parse_timestamp(stamp.decode()))
    except (ValueError, UnicodeDecodeError):
        at, rest = _ms(datetime.now(UTC)), raw
    source, whole = FRAMES.get(rest[:1], (None, True))
    if source is None or rest[1:2] != b" ":
        return at, STDERR, rest + b"\n"
    data = rest[2:]
    return at, source, data + b"\n" if whole else data


@dataclass
class Copied:
    """What one log request copied: the last line's time and how many lines share it (where
    to resume), a last line without its end, and whether the stream broke (rather than
    ending)."""

    last: datetime | None = None
    count: int = 0
    rest: list[tuple[datetime, str, bytes]] = field(default_factory=list)
    broke: bool = True


class LineJoiner:
    """Joins the relay's pieces of a line (a pipeline writing a line in several writes) into
    the line, timed by its first piece, so that resuming counts lines as the file does. A line
    past MAX_LINE_BYTES goes on in pieces (the log writer cuts such lines anyway)."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[datetime, bytearray]] = {}

    def add(self, at: datetime, source: str, data: bytes) -> tuple[datetime, str, bytes] | None:
        start, buffer = self._open.pop(source, (at, bytearray()))
        buffer += data
        if buffer.endswith(b"\n") or len(buffer) >= MAX_LINE_BYTES:
            return start, source, bytes(buffer)
        self._open[source] = (start, buffer)
        return None

    def rest(self) -> list[tuple[datetime, str, bytes]]:
        rest = [(start, source, bytes(buffer)) for source, (start, buffer) in self._open.items()]
        self._open.clear()
        return rest


class KubernetesExecutor(Executor):
    name = "kubernetes"
    survives_engine_restart = True  # the Job runs on; the next engine re-attaches by label
    # Pods have no per-container process limit (that is the kubelet's podPidsLimit).
    enforced_limits = frozenset({"memory_bytes", "cpus", "tmp_bytes"})

    def __init__(self) -> None:
        self.pod = PodSettings.from_settings(scope=installation_scope())
        self.api = KubernetesApi(self.pod.namespace)

    def image(self, python_version: str) -> str:
        return self.pod.image_template.format(python_version=python_version)

    def check(self) -> None:
        try:
            self.api.version()
        except LookupError as exc:
            raise InfrastructureError(f"Kubernetes API server: {exc} not found") from None

    def env_key(self, spec: RunSpec) -> str | None:
        # The image reference stands for the runtime (pin it by digest to rebuild on change).
        return env_key(
            pipeline_dir=spec.pipeline_dir,
            python_version=spec.python_version,
            runtime_id=self.image(spec.python_version),
            extra_requirements=spec.extra_requirements,
        )

    def prepared_env(self, spec: RunSpec) -> Path | None:
        return env_ready(self.name, self.env_key(spec))

    def start(self, spec: RunSpec) -> KubernetesExecution:
        manifest = job_manifest(spec, self.pod, prepared=self.prepared_env(spec))
        if spec.output_dir is not None:
            # Before the Job: a hostPath subPath must exist; the runner uid is not the engine's.
            output_dir_prepare(spec.output_dir, world_writable=True)
        try:
            created = self.api.create_job(manifest)
        except LookupError:
            raise InfrastructureError(
                f"FASTFLOW_K8S_NAMESPACE: namespace {self.pod.namespace!r} does not exist"
            ) from None
        return KubernetesExecution(spec=spec, executor=self, job=created)

    def reattach(self, spec: RunSpec, handle_id: str) -> KubernetesExecution | None:
        try:
            job = self.api.get_job(handle_id)
        except LookupError:
            return None
        return KubernetesExecution(spec=spec, executor=self, job=job, resume=True)

    def running_handles(self) -> dict[str, str]:
        jobs = self.api.list_jobs(scope_selector(self.pod.scope))
        handles = {}
        for job in jobs:
            metadata = job.get("metadata") or {}
            handles[(metadata.get("labels") or {}).get(LABEL_RUN_ID, "")] = metadata.get("name")
        return handles

    def find_handle(self, run_id: str) -> str | None:
        try:
            return self.api.get_job(job_name(run_id))["metadata"]["name"]
        except LookupError:
            return None

    def remove_orphan(self, handle_id: str) -> None:
        self.api.delete_job(handle_id, grace_seconds=0, foreground=False)

    def warm(
        self,
        *,
        pipeline_name: str,
        pipeline_dir: Path,
        python_version: str,
        timeout: float,
        extra_requirements: tuple[str, ...] = (),
    ) -> str:
        return warm_with_jobs(
            self,
            pipeline_name=pipeline_name,
            pipeline_dir=Path(pipeline_dir),
            python_version=python_version,
            timeout=timeout,
            extra_requirements=extra_requirements,
        )


class KubernetesExecution(Execution):
    def __init__(
        self,
        *,
        spec: RunSpec,
        executor: KubernetesExecutor,
        job: dict[str, Any],
        resume: bool = False,
    ) -> None:
        metadata = job.get("metadata") or {}
        super().__init__(spec=spec, handle_id=metadata.get("name") or job_name(spec.run_id))
        self._executor = executor
        self._api = executor.api
        self._resume = resume
        self._cold = (metadata.get("labels") or {}).get(LABEL_ENV) == "cold"
        self._created = _created(metadata)
        self._selector = f"{LABEL_RUN_ID}={spec.run_id}"
        self._poll_seconds = settings.FASTFLOW_K8S_POLL_SECONDS
        self._wake = threading.Event()
        self._done = threading.Event()  # the outcome is known: followers and samplers stop
        self._pod_name = ""
        self._pod: dict[str, Any] | None = None  # the pod as last seen
        self._pod_gone = False  # the pod disappeared without us deleting it
        self._log_error = ""
        self._unreachable = ""
        self._writers: tuple[LogWriter, MetricsRecorder] | None = None
        self._stream: Any = None

    # --- any thread ---------------------------------------------------------------------------

    def cancel(self) -> None:
        super().cancel()
        self._wake.set()

    def abandon(self) -> None:
        super().abandon()
        writers = self._writers
        if writers is not None:
            writers[0].abandon()
            writers[1].close()
        self._done.set()
        stream = self._stream
        if stream is not None:
            close_quietly(stream)
        self._wake.set()

    # --- the worker thread ----------------------------------------------------------------------

    def wait_for_outcome(self) -> Outcome:
        started = self._wait_until_started()
        if isinstance(started, Outcome):
            return started
        spec = self.spec
        since, skip = resume_point(spec.log_file) if self._resume else (None, 0)
        noted = noted_ready(spec.log_file) if self._resume else None
        log, metrics = run_writers(
            spec, ready_token="" if noted else wrapper.READY_TOKEN, started_at=started
        )
        self._writers = (log, metrics)
        if self.abandoned.is_set():
            self.abandon()
        if self._cold and not self._resume:
            log.note(COLD_NOTE, at=started)
        outcome = Outcome(exit_code=None)
        try:
            follower = _thread(
                self._follow_logs, f"logs-{spec.run_id}", log, since, skip, noted and noted[0]
            )
            _thread(self._sample, f"metrics-{spec.run_id}", metrics, log)
            self._supervise(log, outcome, started, follower)
            if self.abandoned.is_set():
                outcome.error = "abandoned: another engine took the run over"
                return outcome
            follower.join(DRAIN_TIMEOUT + (settings.FASTFLOW_CANCEL_GRACE_SECONDS or 0))
            if follower.is_alive() and self._stream is not None:
                close_quietly(self._stream)
            self._settle(log, outcome)
            self._note_ending(outcome, log, started, noted)
            note_setup_failure(outcome, log)
        finally:
            self._done.set()
            log.close()
            metrics.close()
        outcome_complete(outcome, spec=spec, log=log, metrics=metrics)
        return outcome

    def cleanup(self) -> None:
        """Delete the Job and its pod, after the engine recorded the outcome (an engine that
        dies in between leaves a finished Job, which reconcile or its TTL removes)."""
        self._done.set()
        if self.abandoned.is_set():
            return  # its new owner removes it
        try:
            self._api.delete_job(self.handle_id, grace_seconds=None, foreground=False)
        except InfrastructureError as exc:
            logger.warning("could not delete Job %s: %s", self.handle_id, exc)

    # --- before the container started -----------------------------------------------------------

    def _wait_until_started(self) -> datetime | Outcome:
        """The container's start time once it started, else the Outcome of a run that ends
        before (cancelled, Pending too long, lost)."""
        while True:
            if self.abandoned.is_set():
                return Outcome(exit_code=None, error="abandoned: another engine took the run over")
            if self.cancel_event.is_set():
                self._delete(grace=0)
                return self._early("cancelled before its pod started: Job deleted", cancelled=True)
            pod = self._find_pod()
            if pod is not None:
                if at := started_at(pod, CONTAINER):
                    return at
                if lost := lost_reason(pod, CONTAINER):
                    self._delete(grace=0)
                    return self._early(f"the run's pod was lost before it started: {lost}")
            elif self._pod_gone:
                return self._early("the run's Job was deleted before its pod started")
            # While the API cannot be reached nothing is known: the pending clock waits too.
            if not self._unreachable and (failed := self._still_pending(pod)):
                return failed
            self.cancel_event.wait(self._poll_seconds)

    def _still_pending(self, pod: dict[str, Any] | None) -> Outcome | None:
        """The failed run's Outcome when the pod cannot start or waited too long, else None."""
        timeout = self._executor.pod.pending_timeout
        reason, permanent = pending_reason(pod, CONTAINER)
        if not permanent and time.time() - self._pending_since(pod) <= timeout:
            return None
        self._delete(grace=0)
        if permanent:
            return self._early(f"the run's pod cannot start: {reason}")
        return self._early(
            f"the run's pod did not start within {timeout:g} s "
            f"(FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS): {reason}"
        )

    def _pending_since(self, pod: dict[str, Any] | None) -> float:
        created = _created((pod or {}).get("metadata") or {}) or self._created
        return created.timestamp() if created else time.time()

    def _early(self, message: str, *, cancelled: bool = False) -> Outcome:
        """The outcome of a run whose container never ran, noted in its log."""
        log = LogWriter(self.spec.log_file, max_bytes=self.spec.log_max_bytes)
        log.note(message)
        log.close()
        outcome = Outcome(exit_code=None, cancelled=cancelled)
        outcome.error = "cancelled" if cancelled else message
        return outcome

    def _find_pod(self) -> dict[str, Any] | None:
        """The run's pod now (None when there is none, or the API cannot be reached)."""
        try:
            pods = self._api.list_pods(self._selector)
        except InfrastructureError as exc:
            if not self._unreachable:
                logger.warning("run %s: %s (the pod runs on; retrying)", self.spec.run_id, exc)
            self._unreachable = str(exc)
            return None
        self._unreachable = ""
        pods.sort(key=lambda pod: (pod.get("metadata") or {}).get("creationTimestamp") or "")
        pod = next(
            (p for p in pods if p["metadata"]["name"] == self._pod_name), pods[0] if pods else None
        )
        if pod is None:
            # Deleted (or not created yet): it was there before, or the Job is gone.
            self._pod_gone = bool(self._pod_name) or not self._job_exists()
            return None
        self._pod_name = pod["metadata"]["name"]
        self._pod = pod
        return pod

    def _job_exists(self) -> bool:
        try:
            self._api.get_job(self.handle_id)
        except LookupError:
            return False
        except InfrastructureError:
            return True
        return True

    # --- while it runs ----------------------------------------------------------------------------

    def _supervise(
        self, log: LogWriter, outcome: Outcome, started: datetime, follower: threading.Thread
    ) -> None:
        """Poll the pod until its container ended (or it was lost), enforcing cancel and
        timeout. The log follower ending wakes it at once."""
        deadline = started.timestamp() + self.spec.timeout if self.spec.timeout else None
        next_poll = 0.0
        while not self.abandoned.is_set():
            if self.cancel_event.is_set():
                grace = settings.FASTFLOW_CANCEL_GRACE_SECONDS
                log.note(f"cancelled: deleting the Job (SIGTERM, SIGKILL after {grace:g} s)")
                outcome.cancelled = True
                self._delete(grace=math.ceil(grace))
                return
            now = time.time()
            if deadline is not None and now >= deadline:
                self._delete(grace=0)
                log.note(f"timeout after {self.spec.timeout:g} s: pod deleted")
                outcome.timed_out = True
                return
            if time.monotonic() >= next_poll or not follower.is_alive():
                if self._container_done():
                    return
                next_poll = time.monotonic() + self._poll_seconds
            pause = (
                self._poll_seconds if deadline is None else min(self._poll_seconds, deadline - now)
            )
            self._wake.wait(max(pause, 0.01))
            self._wake.clear()

    def _container_done(self) -> bool:
        """Whether the container ended or the pod was lost (False while the API is away)."""
        pod = self._find_pod()
        if pod is None:
            return self._pod_gone
        return ended(pod, CONTAINER) is not None or bool(lost_reason(pod, CONTAINER))

    def _delete(self, *, grace: int) -> None:
        """Stop the run: its pod with `grace` seconds between SIGTERM and SIGKILL, the Job
        (Foreground: it stays listed by label until its pod is gone)."""
        try:
            if self._pod_name:
                self._api.delete_pod(self._pod_name, grace_seconds=grace)
            self._api.delete_job(self.handle_id, grace_seconds=grace, foreground=True)
        except InfrastructureError as exc:
            logger.warning("run %s: could not delete its Job: %s", self.spec.run_id, exc)

    def _settle(self, log: LogWriter, outcome: Outcome) -> None:
        """Exit code, OOM and end time from the container status; why, when there is none."""
        pod = self._pod
        end = ended(pod, CONTAINER) if pod else None
        if end is None and not self._pod_gone:
            pod = self._find_pod()
            end = ended(pod, CONTAINER) if pod else None
        if end is not None:
            outcome.exit_code = end.exit_code
            outcome.finished_at = end.finished_at
        maybe_deadline = end is None or end.exit_code == wrapper.OOM_EXIT_CODE
        if maybe_deadline and self._deadline_exceeded(log, outcome):
            return
        if end is not None:
            outcome.oom_killed = end.reason == "OOMKilled" or (
                end.exit_code == wrapper.OOM_EXIT_CODE
                and bool(self.spec.mem_hard_limit)
                and not (outcome.timed_out or outcome.cancelled)
            )
            return
        if outcome.cancelled or outcome.timed_out:
            return  # deleted by the engine before its status was seen: the cause is known
        lost = (lost_reason(pod, CONTAINER) if pod else "") or "the pod was deleted"
        outcome.error = f"the run's pod was lost before it ended: {lost}"
        log.note(outcome.error)

    def _deadline_exceeded(self, log: LogWriter, outcome: Outcome) -> bool:
        """The Job's activeDeadlineSeconds (the cluster's backstop for the timeout) ended it."""
        if outcome.timed_out or outcome.cancelled:
            return False
        try:
            failure = job_failure(self._api.get_job(self.handle_id))
        except (LookupError, InfrastructureError):
            return False
        if not failure or failure[0] != "DeadlineExceeded":
            return False
        outcome.timed_out = True
        log.note(f"timeout: the Job's activeDeadlineSeconds ended it ({failure[1]})")
        return True

    def _note_ending(
        self,
        outcome: Outcome,
        log: LogWriter,
        started: datetime,
        noted: tuple[datetime, float] | None,
    ) -> None:
        if log.ready_at is not None:
            outcome.setup_duration = max((log.ready_at - started).total_seconds(), 0.0)
        elif noted:
            outcome.setup_duration = noted[1]
        if outcome.oom_killed:
            limit = format_bytes(self.spec.mem_hard_limit) if self.spec.mem_hard_limit else "its"
            log.note(f"out of memory: the container was killed at its {limit} memory limit")
        if outcome.exit_code and self._cold:
            log.note(COLD_HINT)
        if self._log_error:
            log.note(f"log stream from Kubernetes interrupted: {self._log_error}")

    # --- the log follower -------------------------------------------------------------------------

    def _follow_logs(
        self, log: LogWriter, since: datetime | None, skip: int, ready_at: datetime | None
    ) -> None:
        """Copy the container's log into the run's log until the container ended. A stream
        that breaks (the API server restarted or unreachable, a quiet pipeline's read timeout)
        is resumed after the last line read; one that broke around the container's end is
        read once more, so the last lines are not lost."""
        final = False
        try:
            while not (self.abandoned.is_set() or self._done.is_set()):
                copied = self._copy_stream(log, since, skip, ready_at)
                if self.abandoned.is_set():
                    return
                if not copied.broke:
                    self._log_error = ""  # whatever broke before was made good
                done = self._container_done()
                if done and (not copied.broke or final):
                    for at, source, data in copied.rest:
                        log.feed(data, at, source=source)  # it ended in the middle of a line
                    return
                final = done
                if copied.last is not None:
                    since, skip = copied.last, copied.count
                ready_at = ready_at or log.ready_at
                if not done:
                    self._done.wait(self._poll_seconds)
        finally:
            self._wake.set()

    def _open_stream(self, since: datetime | None) -> Any:
        try:
            response = self._api.pod_log(self._pod_name, CONTAINER, since)
        except (InfrastructureError, LookupError) as exc:
            self._log_error = str(exc)
            return None
        self._stream = response
        if self.abandoned.is_set():
            close_quietly(response)
        return response

    def _copy_stream(
        self, log: LogWriter, since: datetime | None, skip: int, ready_at: datetime | None
    ) -> Copied:
        """One log request. Like the Docker executor's, line by line (the relay's pieces are
        joined first, each line timed by its first piece): `since` + `skip` drop what the file
        holds already; only the first stdout line can be the wrapper's ready line."""
        copied = Copied()
        first_stdout = True
        response = self._open_stream(since)
        if response is None:
            return copied
        joiner = LineJoiner()
        try:
            for raw in log_lines(response):
                if self.abandoned.is_set():
                    break
                unit = joiner.add(*parse_log_line(raw))
                if unit is None:
                    continue
                at, source, data = unit
                if source == STDOUT and first_stdout:
                    first_stdout = False
                    if self._ready_line(log, at, data, ready_at):
                        continue  # fed as the ready line, or its re-delivery dropped
                copied.count = copied.count + 1 if at == copied.last else 1
                copied.last = at
                if since is not None and (at < since or (skip and at == since)):
                    skip -= at == since
                    continue
                log.feed(data, at, source=source)
            copied.broke = False
        except Exception as exc:  # noqa: BLE001 - a broken stream is resumed by the caller
            if not (self.abandoned.is_set() or is_read_timeout(exc)):
                self._log_error = str(exc)
        finally:
            close_quietly(response)
            self._stream = None
        copied.rest = joiner.rest()
        return copied

    @staticmethod
    def _ready_line(log: LogWriter, at: datetime, data: bytes, ready_at: datetime | None) -> bool:
        """Handle the first stdout line if it is the wrapper's ready line (not counted as a
        pipeline line): fed to the writer on a first attach, dropped when an earlier engine
        noted it at that millisecond. False for anything else."""
        if data.rstrip(b"\r\n") != wrapper.READY_TOKEN.encode():
            return False
        if ready_at is None:
            log.feed(data, at, source=STDOUT)
            return True
        return at == ready_at

    # --- metrics --------------------------------------------------------------------------------

    def _sample(self, metrics: MetricsRecorder, log: LogWriter) -> None:
        """Poll the metrics API; one sample per new reading (metrics-server refreshes about
        every 15 s, so runs shorter than that may get none)."""
        interval = settings.FASTFLOW_METRICS_INTERVAL_SECONDS
        last_stamp = None
        api_seen = False  # the metrics API answered once: a 404 is "no reading yet"
        while not self._done.wait(interval):
            try:
                reading = self._api.pod_metrics(self._pod_name)
            except LookupError:
                api_seen = api_seen or self._api.metrics_available()
                if not api_seen:
                    log.note(NO_METRICS_NOTE, once="no_metrics")
                    return
                continue  # no reading for this pod yet
            except InfrastructureError as exc:
                logger.debug("metrics of %s: %s", self._pod_name, exc)
                continue
            usage = _container_usage(reading)
            if usage is None or reading.get("timestamp") == last_stamp:
                continue
            last_stamp = reading.get("timestamp")
            metrics.record(cpu_percent=usage[0] * 100, memory_bytes=usage[1])


def _container_usage(reading: dict[str, Any]) -> tuple[float, int] | None:
    from kubernetes.utils import parse_quantity

    for container in reading.get("containers") or []:
        if container.get("name") == CONTAINER:
            usage = container.get("usage") or {}
            try:
                cores = float(parse_quantity(usage.get("cpu", "0")))
                memory = int(parse_quantity(usage.get("memory", "0")))
            except ValueError:
                return None
            return cores, memory
    return None


def _created(metadata: dict[str, Any]) -> datetime | None:
    try:
        return parse_timestamp(metadata["creationTimestamp"])
    except (KeyError, TypeError, ValueError):
        return None


def _thread(target: Any, name: str, *args: Any) -> threading.Thread:
    # Daemon threads: a stopping engine leaves the Job running (the next engine re-attaches).
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread
