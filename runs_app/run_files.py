"""Moving the files of existing runs into the sharded layout (`manage.py runfiles_shard`).

New runs get `logs/<pipeline>/<shard>/<run id>.log` and `metrics/<pipeline>/<shard>/<run
id>.jsonl` (runs_app/logs.py). Runs from before keep working where they are, since each run
stores its paths; this moves them, so that no folder keeps the whole history (the flat
`metrics/` folder held one file per run). Only runs that ended more than a minute ago are
touched: a live run's files are being written, and a run that just ended may still get its
closing notes appended. Each file is moved, then its row updated conditionally on the old path;
if the row changed meanwhile, the file goes back. A crash between the two leaves the row
pointing at the old path while the file sits at the new one: running the command again finds
it there and repairs the row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from fastflow_site.datadir import private_dir
from runs_app.logs import data_file, run_log_file, run_metrics_file
from runs_app.models import TERMINAL_STATUSES, PipelineRun
from runs_app.run_output import is_object_name

logger = logging.getLogger(__name__)

SETTLED_AFTER = timedelta(minutes=1)
TARGETS: dict[str, Callable[[PipelineRun], Path]] = {
    "log_file": run_log_file,
    "metrics_file": run_metrics_file,
}


@dataclass
class ShardReport:
    moved: int = 0
    repaired: int = 0  # the file was already in place, the row now says so
    missing: int = 0  # neither at the stored path nor at the new one
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.moved} file(s) moved, {self.repaired} row(s) repaired, "
            f"{self.missing} file(s) missing, {len(self.failed)} failed"
        )


def run_files_shard(*, batch: int = 1000, dry_run: bool = False) -> ShardReport:
    """Move every settled run's log and metrics file to its sharded path (see the module)."""
    report = ShardReport()
    settled = PipelineRun.objects.filter(
        status__in=TERMINAL_STATUSES, finished_at__lt=timezone.now() - SETTLED_AFTER
    ).only("id", "pipeline_id", "status", "log_file", "metrics_file")
    last = None
    while True:
        page = settled.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        runs = list(page[:batch])
        if not runs:
            return report
        for run in runs:
            for column, target_of in TARGETS.items():
                _shard_file(run, column, target_of(run), report, dry_run=dry_run)
        last = runs[-1].pk


def _shard_file(
    run: PipelineRun, column: str, target: Path, report: ShardReport, *, dry_run: bool
) -> None:
    stored = getattr(run, column)
    if not stored or is_object_name(stored) or Path(stored) == target:
        return  # nothing, already in place, or in the object store (named, not sharded)
    current = data_file(stored)
    if current is None:
        if target.is_file():
            if not dry_run and _repoint(run, column, stored, target):
                report.repaired += 1
        else:
            report.missing += 1
        return
    if dry_run:
        report.moved += 1
        return
    if target.exists():
        report.failed.append(f"{run.id}: {target} exists already; {current} left in place")
        return
    try:
        private_dir(target.parent)  # 0700, like every folder of the data dir
        os.replace(current, target)
    except OSError as exc:
        report.failed.append(f"{run.id}: cannot move {current}: {exc}")
        return
    if _repoint(run, column, stored, target):
        report.moved += 1
        return
    os.replace(target, current)  # the row changed under us (deleted?): leave things as they were
    report.failed.append(f"{run.id}: its row changed while its {column} was moved; not moved")


def _repoint(run: PipelineRun, column: str, stored: str, target: Path) -> bool:
    updated = PipelineRun.objects.filter(id=run.id, **{column: stored}).update(
        **{column: str(target)}
    )
    return bool(updated)
