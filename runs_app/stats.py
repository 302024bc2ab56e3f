"""Run statistics for /metrics: counted once, when a run reaches its terminal status.

Every finished run adds one to its `runs` counter and, where it has them, one observation to
the run duration, setup duration and schedule lag histograms, all labelled with the pipeline
and the final status. Rows (`RunStat`) hold per-bucket counts (not cumulative); the collector
adds them up. Recording happens inside the finishing transaction, so a crash never counts a run
twice or loses one, and a scrape reads this small table instead of aggregating `pipeline_runs`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from fastflow_site.db import counters_add
from runs_app.models import PipelineRun, RunStat
from runs_app.schedule_services import schedule_fire_time

RUNS = "runs"


@dataclass(frozen=True)
class Histogram:
    family: str
    bounds: tuple[float, ...]  # upper bounds in seconds, ascending; +Inf is implied

    def le(self, value: float) -> str:
        """The label of the smallest bucket holding `value`."""
        index = bisect.bisect_left(self.bounds, value)
        return format_bound(self.bounds[index]) if index < len(self.bounds) else "+Inf"

    @property
    def labels(self) -> list[str]:
        return [format_bound(b) for b in self.bounds] + ["+Inf"]


def format_bound(bound: float) -> str:
    """How Prometheus prints a bucket bound: 0.5, 1.0, 300.0, +Inf."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


RUN_DURATION = Histogram(
    "run_duration",
    (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
SETUP_DURATION = Histogram(
    "setup_duration",
    (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SCHEDULE_LAG = Histogram(
    "schedule_lag",
    (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
HISTOGRAMS = {h.family: h for h in (RUN_DURATION, SETUP_DURATION, SCHEDULE_LAG)}


def run_observations(run: PipelineRun) -> dict[str, float]:
    """The histogram values a finished run contributes (family → seconds)."""
    values: dict[str, float] = {}
    if run.started_at is not None and run.finished_at is not None:
        values[RUN_DURATION.family] = max((run.finished_at - run.started_at).total_seconds(), 0)
    if run.setup_duration is not None:
        values[SETUP_DURATION.family] = max(run.setup_duration, 0.0)
    if run.triggered_by == "scheduler" and run.started_at is not None:
        fired = schedule_fire_time(run.idempotency_key)
        if fired is not None:
            values[SCHEDULE_LAG.family] = max((run.started_at - fired).total_seconds(), 0.0)
    return values


def run_stats_record(*, run: PipelineRun) -> None:
    """Count a run that just reached its terminal status. Call inside the transaction that
    made it terminal (the conditional UPDATE guarantees it is counted once). One statement for
    the run counter and every histogram observation."""
    series = [(RUNS, "", 0.0)] + [
        (family, HISTOGRAMS[family].le(value), value)
        for family, value in run_observations(run).items()
    ]
    counters_add(
        RunStat,
        rows=[
            {
                "pipeline_id": run.pipeline_id,
                "family": family,
                "status": run.status,
                "le": le,
                "count": 1,
                "total": value,
            }
            for family, le, value in series
        ],
        key=("pipeline", "family", "status", "le"),
        add=("count", "total"),
    )
