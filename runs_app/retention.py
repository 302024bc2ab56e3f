"""Retention: finished runs beyond a pipeline's limits are deleted with their log and metrics
files; files whose run no longer exists are swept; empty log folders removed.

A pipeline's `retention` in pipeline.json overrides the global FASTFLOW_RETENTION_* defaults
key by key; 0 means "no limit". A run is deleted when it is older than `days` (FAILED runs:
`failed_days`, when set) or not among the newest `keep_runs` finished runs (a FAILED run still
inside `failed_days` is kept). Never deleted: PENDING and RUNNING runs, and runs a PENDING or
RUNNING retry or downstream run points to.

Deleting is batched along the (pipeline, queued_at) index: each batch is one short
transaction, followed by a pause at least as long as the batch, so the dispatcher's claims
(which need the same write lock on SQLite) wait at most about one batch.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from audit_app.context import AuditContext
from audit_app.services import audit_record
from pipelines_app.models import Pipeline
from runs_app.logs import artifacts_dir_for, artifacts_remove, artifacts_root, data_file
from runs_app.models import TERMINAL_STATUSES, PipelineRun, RunStatus

logger = logging.getLogger(__name__)

ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)
# A file younger than this is never an orphan: its run may be committing right now.
ORPHAN_MIN_AGE_SECONDS = 3600.0
ORPHAN_CHUNK = 500


@dataclass(frozen=True)
class RetentionPolicy:
    keep_runs: int = 0
    days: int = 0
    failed_days: int = 0

    @property
    def limited(self) -> bool:
        return bool(self.keep_runs or self.days or self.failed_days)

    def describe(self) -> str:
        if not self.limited:
            return "keep everything"
        parts = []
        if self.keep_runs:
            parts.append(f"the newest {self.keep_runs} runs")
        if self.days:
            parts.append(f"{self.days} days")
        text = "keep " + (" and at most ".join(parts) if parts else "all runs")
        if self.failed_days:
            text += f"; failed runs {self.failed_days} days"
        return text


def retention_policy(*, pipeline: Pipeline) -> RetentionPolicy:
    """The policy in force: the pipeline's `retention` over the global defaults."""
    try:
        own = pipeline.spec.retention
    except ValueError:
        own = None

    def pick(name: str, default: int) -> int:
        value = getattr(own, name, None) if own is not None else None
        return default if value is None else value

    return RetentionPolicy(
        keep_runs=pick("keep_runs", settings.FASTFLOW_RETENTION_KEEP_RUNS),
        days=pick("days", settings.FASTFLOW_RETENTION_DAYS),
        failed_days=pick("failed_days", settings.FASTFLOW_RETENTION_FAILED_DAYS),
    )


@dataclass
class RetentionReport:
    dry_run: bool = False
    runs: dict[str, int] = field(default_factory=dict)  # pipeline → runs (to be) deleted
    files: int = 0
    bytes: int = 0
    orphan_files: int = 0
    orphan_bytes: int = 0
    stopped_early: bool = False
    batch_seconds: list[float] = field(default_factory=list)  # each write transaction

    @property
    def total_runs(self) -> int:
        return sum(self.runs.values())


def _protected() -> Exists:
    return Exists(PipelineRun.objects.filter(parent_run=OuterRef("pk"), status__in=ACTIVE))


def runs_expired(
    *, pipeline: Pipeline, policy: RetentionPolicy, now: datetime | None = None
) -> QuerySet[PipelineRun]:
    """The runs of `pipeline` that `policy` says to delete (not yet ordered or batched)."""
    now = now or timezone.now()
    finished = PipelineRun.objects.filter(pipeline=pipeline, status__in=TERMINAL_STATUSES)
    failed_keep = (
        Q(status=RunStatus.FAILED, queued_at__gte=now - timedelta(days=policy.failed_days))
        if policy.failed_days
        else Q(pk__in=[])
    )
    expired = Q(pk__in=[])
    if policy.days:
        by_age = Q(queued_at__lt=now - timedelta(days=policy.days))
        if policy.failed_days:
            by_age &= ~Q(status=RunStatus.FAILED)  # failed runs go by failed_days instead
        expired |= by_age
    if policy.failed_days:
        cut = now - timedelta(days=policy.failed_days)
        expired |= Q(status=RunStatus.FAILED, queued_at__lt=cut)
    if policy.keep_runs:
        boundary = (
            finished.order_by("-queued_at", "-id").values_list("queued_at", "id")[
                policy.keep_runs : policy.keep_runs + 1
            ]
        ).first()
        if boundary is not None:
            queued_at, run_id = boundary
            beyond = Q(queued_at__lt=queued_at) | Q(queued_at=queued_at, id__lte=run_id)
            expired |= beyond & ~failed_keep
    return finished.filter(expired).exclude(_protected())


def _batches(queryset: QuerySet[PipelineRun], size: int) -> Iterator[list[tuple]]:
    """Oldest first along (queued_at, id), resuming after the last row of each batch."""
    after: tuple | None = None
    while True:
        page = queryset.order_by("queued_at", "id")
        if after is not None:
            page = page.filter(Q(queued_at__gt=after[0]) | Q(queued_at=after[0], id__gt=after[1]))
        rows = list(page.values_list("queued_at", "id", "log_file", "metrics_file")[:size])
        if not rows:
            return
        yield rows
        after = rows[-1][:2]


def _remove(stored: str) -> int:
    path = data_file(stored)
    if path is None:
        return 0
    try:
        size = path.stat().st_size
        path.unlink()
    except OSError as exc:
        logger.warning("retention: cannot remove %s: %s", path, exc)
        return 0
    return size


def runs_retention_apply(
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    pause: float | None = None,
    should_continue: Callable[[], bool] = lambda: True,
    audit: AuditContext | None = None,
) -> RetentionReport:
    """Apply every pipeline's policy (or, with dry_run, count what it would delete), then
    sweep orphaned files and empty folders."""
    size = batch_size or settings.FASTFLOW_RETENTION_BATCH_SIZE
    wait = settings.FASTFLOW_RETENTION_BATCH_PAUSE_SECONDS if pause is None else pause
    report = RetentionReport(dry_run=dry_run)
    now = timezone.now()
    for pipeline in Pipeline.objects.order_by("pipeline_name"):
        policy = retention_policy(pipeline=pipeline)
        if not policy.limited:
            continue
        expired = runs_expired(pipeline=pipeline, policy=policy, now=now)
        if dry_run:
            count = expired.count()
            if count:
                report.runs[pipeline.pipeline_name] = count
            continue
        for rows in _batches(expired, size):
            if not should_continue():
                report.stopped_early = True
                return report
            deleted = _delete_batch(rows, report, pipeline=pipeline, policy=policy, audit=audit)
            if deleted:
                report.runs[pipeline.pipeline_name] = (
                    report.runs.get(pipeline.pipeline_name, 0) + deleted
                )
            # At least as long as the batch held the lock: on SQLite a waiting claim sleeps
            # up to 100 ms between tries (the busy handler), and a deleter that took the lock
            # again sooner could starve it. So dispatch gets at least half of the write time.
            time.sleep(max(wait, report.batch_seconds[-1] if report.batch_seconds else 0.0))
    files, size_bytes = orphan_files_sweep(dry_run=dry_run)
    report.orphan_files, report.orphan_bytes = files, size_bytes
    if not dry_run:
        empty_folders_remove()
    return report


def _delete_batch(
    rows: list[tuple],
    report: RetentionReport,
    *,
    pipeline: Pipeline,
    policy: RetentionPolicy,
    audit: AuditContext | None,
) -> int:
    ids = [row[1] for row in rows]
    # Files first (outside the transaction): a row without files only shows "no log", files
    # without a row would be found again only by the orphan sweep.
    for _, run_id, log_file, metrics_file in rows:
        for stored in (log_file, metrics_file):
            removed = _remove(stored)
            if removed:
                report.files += 1
                report.bytes += removed
        # The files kept from the run (a notebook's executed copy) go with it too.
        files, size = artifacts_remove(
            artifacts_dir_for(pipeline_name=pipeline.pipeline_name, run_id=run_id)
        )
        report.files += files
        report.bytes += size
    started = time.monotonic()
    with transaction.atomic():
        # Re-checked inside: a run that got a live retry since the batch was read stays.
        _, per_model = (
            PipelineRun.objects.filter(id__in=ids, status__in=TERMINAL_STATUSES)
            .exclude(_protected())
            .only("id")
            .delete()
        )
        deleted = per_model.get(PipelineRun._meta.label, 0)
        if deleted:
            audit_record(
                audit=audit,
                action="retention.delete",
                target=pipeline,
                details={"runs": deleted, "policy": policy.describe()},
            )
    report.batch_seconds.append(time.monotonic() - started)
    return deleted


def _run_files() -> Iterator[tuple[Path, uuid.UUID]]:
    for root, suffix in ((Path(settings.LOGS_DIR), ".log"), (Path(settings.METRICS_DIR), ".jsonl")):
        if not root.is_dir():
            continue
        for dirpath, _, names in os.walk(root):
            for name in names:
                if not name.endswith(suffix):
                    continue
                try:
                    yield Path(dirpath) / name, uuid.UUID(name[: -len(suffix)])
                except ValueError:
                    continue  # not a run's file


def orphan_files_sweep(*, dry_run: bool = False) -> tuple[int, int]:
    """Remove run log/metrics files whose run row no longer exists; returns (files, bytes)."""
    cutoff = time.time() - ORPHAN_MIN_AGE_SECONDS
    files = removed_bytes = 0
    chunk: list[tuple[Path, uuid.UUID]] = []

    def flush() -> None:
        nonlocal files, removed_bytes
        known = set(
            PipelineRun.objects.filter(id__in=[run_id for _, run_id in chunk]).values_list(
                "id", flat=True
            )
        )
        for path, run_id in chunk:
            if run_id in known:
                continue
            try:
                stat = path.stat()
                if stat.st_mtime > cutoff:
                    continue
                if not dry_run:
                    path.unlink()
            except OSError:
                continue
            files += 1
            removed_bytes += stat.st_size
        chunk.clear()

    for item in _run_files():
        chunk.append(item)
        if len(chunk) >= ORPHAN_CHUNK:
            flush()
    if chunk:
        flush()
    return files, removed_bytes


def empty_folders_remove() -> int:
    removed = 0
    for root in (Path(settings.LOGS_DIR), Path(settings.METRICS_DIR), artifacts_root()):
        if not root.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
            if Path(dirpath) == root:
                continue
            try:
                os.rmdir(dirpath)
            except OSError:
                continue  # not empty
            removed += 1
    return removed


def pipeline_log_bytes(*, pipeline_name: str) -> int:
    """Disk used by a pipeline's run logs (its folder under the logs directory)."""
    folder = Path(settings.LOGS_DIR) / pipeline_name
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += (Path(dirpath) / name).stat().st_size
            except OSError:
                continue
    return total
