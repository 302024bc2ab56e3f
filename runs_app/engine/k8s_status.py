"""Reading a run pod's status (plain API JSON): started, ended, stuck Pending, lost.

Kept apart from the executor so each rule is one small function: what counts as "started"
(the container has a running or terminated state), why a pod is still Pending (the scheduler's
`PodScheduled` condition, the container's waiting reason), and what says its node was lost
(a `DisruptionTarget` condition, the node controller's `NodeLost`, a deletion nobody asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runs_app.logs import parse_timestamp

# Waiting reasons that no amount of waiting fixes: the run fails at once with the reason.
PERMANENT_WAITING = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
# Pod status reasons for a pod whose node went away or that was evicted from it.
LOST_REASONS = {
    "NodeLost",
    "Evicted",
    "Shutdown",
    "NodeShutdown",
    "Terminated",
    "UnexpectedAdmissionError",
}


@dataclass(frozen=True)
class Ended:
    """A terminated container: its exit code, the runtime's reason (`OOMKilled`, `Error`,
    `Completed`, …) and when it exited."""

    exit_code: int
    reason: str
    finished_at: datetime | None


def container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name:
            return status
    return {}


def _time(value: object) -> datetime | None:
    try:
        return parse_timestamp(str(value)) if value else None
    except ValueError:
        return None


def started_at(pod: dict[str, Any], name: str) -> datetime | None:
    """When the container started, once it has (running, or already terminated)."""
    state = container_status(pod, name).get("state") or {}
    for key in ("running", "terminated"):
        if key in state and state[key] is not None:
            return _time(state[key].get("startedAt")) or _time(
                (pod.get("status") or {}).get("startTime")
            )
    return None


def ended(pod: dict[str, Any], name: str) -> Ended | None:
    terminated = (container_status(pod, name).get("state") or {}).get("terminated")
    if not terminated:
        return None
    return Ended(
        exit_code=int(terminated.get("exitCode", -1)),
        reason=str(terminated.get("reason") or ""),
        finished_at=_time(terminated.get("finishedAt")),
    )


def pending_reason(pod: dict[str, Any] | None, name: str) -> tuple[str, bool]:
    """Why the pod has not started its container yet, and whether that is permanent."""
    if pod is None:
        return "the Job has not created its pod yet", False
    waiting = (container_status(pod, name).get("state") or {}).get("waiting") or {}
    if waiting.get("reason"):
        text = _reason(waiting.get("reason"), waiting.get("message"))
        return text, waiting["reason"] in PERMANENT_WAITING
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return _reason(
                condition.get("reason") or "Unschedulable", condition.get("message")
            ), False
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return f"the pod is {phase}", False


def lost_reason(pod: dict[str, Any], name: str) -> str:
    """Why the pod is gone or going although nobody asked ("" when it is not)."""
    status = pod.get("status") or {}
    if status.get("reason") in LOST_REASONS:
        return _reason(status["reason"], status.get("message"))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return _reason(condition.get("reason") or "DisruptionTarget", condition.get("message"))
    if pod.get("metadata", {}).get("deletionTimestamp") and ended(pod, name) is None:
        return "the pod is being deleted"
    if status.get("phase") in {"Failed", "Succeeded", "Unknown"} and ended(pod, name) is None:
        return _reason(status.get("phase"), status.get("message"))
    return ""


def job_failure(job: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a Job's `Failed` condition (e.g. DeadlineExceeded), or None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return str(condition.get("reason") or ""), str(condition.get("message") or "")
    return None


def _reason(reason: object, message: object) -> str:
    return f"{reason}: {message}" if message else str(reason)
