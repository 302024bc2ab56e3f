"""Retention deleting a large history while runs are being dispatched.

Fills the database with `--runs` old finished runs (a share of them with log and metrics files),
then deletes them twice over (refilled in between) while a real engine dispatches trivial runs
one after another, measuring trigger → RUNNING for each:

- batched: `runs_retention_apply` (what the engine's leader and `cleanupruns` do);
- raw: the same rows in one `DELETE` statement, the naive equivalent.

It prints dispatch latency while idle, during each deletion, the deletion's rate and the
duration of its write transactions (batches).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from common import Bench, summary, table, wait_finished


def fill(pipeline, count: int, files: int) -> None:
    from django.conf import settings
    from django.utils import timezone

    from runs_app.models import PipelineRun, RunStatus

    old = timezone.now() - timedelta(days=400)
    logs = Path(settings.LOGS_DIR) / pipeline.pipeline_name
    logs.mkdir(parents=True, exist_ok=True)
    Path(settings.METRICS_DIR).mkdir(parents=True, exist_ok=True)
    batch: list[PipelineRun] = []
    for n in range(count):
        run_id = uuid.uuid4()
        log_file = metrics_file = ""
        if n < files:
            log_path = logs / f"{run_id}.log"
            metrics_path = Path(settings.METRICS_DIR) / f"{run_id}.jsonl"
            log_path.write_text("2026-01-01T00:00:00.000Z hello\n")
            metrics_path.write_text('{"ts": "x", "cpu_percent": 1, "memory_bytes": 1}\n')
            log_file, metrics_file = str(log_path), str(metrics_path)
        batch.append(
            PipelineRun(
                id=run_id,
                pipeline=pipeline,
                status=RunStatus.SUCCESS if n % 10 else RunStatus.FAILED,
                queued_at=old + timedelta(seconds=n),
                started_at=old,
                finished_at=old,
                exit_code=0,
                log_file=log_file,
                metrics_file=metrics_file,
            )
        )
        if len(batch) == 5000:
            PipelineRun.objects.bulk_create(batch)
            batch = []
    PipelineRun.objects.bulk_create(batch)


def dispatch_latencies(pipeline, stop: threading.Event, minimum: int) -> list[float]:
    from django.utils import timezone

    from runs_app.services import run_enqueue

    values: list[float] = []
    while not stop.is_set() or len(values) < minimum:
        # From the caller's trigger, not queued_at: on SQLite the enqueue itself may wait
        # for the write lock, and that wait is part of what a user sees.
        triggered = timezone.now()
        run = wait_finished(run_enqueue(pipeline=pipeline, triggered_by="manual"))
        values.append((run.started_at - triggered).total_seconds())
    return values


def timed_deletion(kind: str, pipeline_name: str) -> dict[str, object]:
    from django.db import connection

    from runs_app.retention import runs_retention_apply

    started = time.monotonic()
    if kind == "batched":
        report = runs_retention_apply()
        deleted, batches = report.total_runs, report.batch_seconds
    else:
        with connection.cursor() as cursor:  # one statement, one transaction
            cursor.execute(
                "DELETE FROM pipeline_runs WHERE pipeline_name = %s "
                "AND status IN ('SUCCESS', 'FAILED', 'CANCELLED')",
                [pipeline_name],
            )
            deleted = cursor.rowcount
        batches = [time.monotonic() - started]
    connection.close()
    return {"seconds": time.monotonic() - started, "deleted": deleted, "batches": batches}


def measure(pipeline, live, kind: str, runs: int, files: int, probes: int):

    t0 = time.monotonic()
    fill(pipeline, runs, files)
    fill_seconds = time.monotonic() - t0
    result: dict[str, object] = {}
    done = threading.Event()

    def delete() -> None:
        try:
            result.update(timed_deletion(kind, pipeline.pipeline_name))
        finally:
            done.set()

    worker = threading.Thread(target=delete)
    worker.start()
    latencies = dispatch_latencies(live, done, probes)
    worker.join()
    return fill_seconds, result, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500_000)
    parser.add_argument("--files", type=int, default=20_000, help="runs that get files on disk")
    parser.add_argument("--probes", type=int, default=10, help="at least this many probe runs")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    # The engine dispatches only; the deletion is driven from here, timed.
    bench = Bench(executor="local", keep=args.keep, FASTFLOW_RETENTION_DAYS="0",
                  FASTFLOW_RETENTION_FAILED_DAYS="0")  # fmt: skip
    try:
        bench.prepare()
        from django.conf import settings
        from django.db import connection

        settings.FASTFLOW_RETENTION_DAYS = 30
        settings.FASTFLOW_RETENTION_FAILED_DAYS = 30
        history = bench.pipeline("history")
        live = bench.pipeline("live")
        bench.start_engine()
        # The live pipeline's probe runs are recent, so retention never touches them.
        stop = threading.Event()
        stop.set()
        idle = dispatch_latencies(live, stop, 20)
        rows = [["idle", "-", "-", "-", *summary(idle), max(idle) * 1000, len(idle)]]
        for kind in ("batched", "raw"):
            fill_s, res, lat = measure(history, live, kind, args.runs, args.files, args.probes)
            batches = res["batches"]
            rows.append(
                [
                    kind,
                    res["deleted"],
                    f"{res['deleted'] / res['seconds']:.0f}",
                    f"{summary(batches)[0]:.0f} / {max(batches) * 1000:.0f}",
                    *summary(lat),
                    max(lat) * 1000,
                    len(lat),
                ]
            )
            print(f"{kind}: filled in {fill_s:.0f} s; deleted in {res['seconds']:.1f} s")
        print(
            f"\ndatabase: {connection.vendor}; {args.runs} runs ({args.files} with files), "
            f"batch size {settings.FASTFLOW_RETENTION_BATCH_SIZE}, pause "
            f"{settings.FASTFLOW_RETENTION_BATCH_PAUSE_SECONDS} s; "
            "latency = trigger → RUNNING, ms\n"
        )
        print(
            table(
                [
                    "deletion",
                    "runs deleted",
                    "runs/s",
                    "write txn median / max (ms)",
                    "dispatch median",
                    "dispatch p95",
                    "dispatch max",
                    "probe runs",
                ],
                rows,
            )
        )
    finally:
        bench.close()


if __name__ == "__main__":
    main()
