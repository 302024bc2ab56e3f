"""Throughput: queue many trivial runs and measure how fast the engine(s) get through them.

    .venv/bin/python bench/throughput.py [--executor local|docker] [--runs 200]
                                         [--concurrency 10] [--engines 1]

All runs are queued with `run_enqueue` before the engines start; runs/s is counted from the
first claim to the last finish (DB timestamps), so queueing speed is not part of it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Bench, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("local", "docker"), default="local")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp installation")
    args = parser.parse_args()

    bench = Bench(executor=args.executor, keep=args.keep)
    try:
        bench.prepare()
        from django.db import connection
        from django.db.models import Max, Min

        from runs_app.models import TERMINAL_STATUSES, PipelineRun
        from runs_app.services import run_enqueue

        pipeline = bench.pipeline("trivial")
        queued_at = time.monotonic()
        for _ in range(args.runs):
            run_enqueue(pipeline=pipeline, triggered_by="manual")
        queue_seconds = time.monotonic() - queued_at
        for _ in range(args.engines):
            bench.start_engine(FASTFLOW_MAX_CONCURRENT_RUNS=str(args.concurrency))

        deadline = time.monotonic() + 60 + args.runs * 5
        while PipelineRun.objects.filter(status__in=TERMINAL_STATUSES).count() < args.runs:
            if time.monotonic() > deadline:
                raise SystemExit("runs did not finish in time")
            time.sleep(0.2)

        runs = PipelineRun.objects.all()
        span = runs.aggregate(first=Min("started_at"), last=Max("finished_at"))
        seconds = (span["last"] - span["first"]).total_seconds()
        statuses = sorted(set(runs.values_list("status", flat=True)))
        durations = [
            (r.finished_at - r.started_at).total_seconds()
            for r in runs.only("started_at", "finished_at")
        ]
        engines = runs.values_list("engine_id", flat=True).distinct().count()
        print(
            f"\n{args.runs} runs of a trivial pipeline, executor {args.executor}, "
            f"database {connection.vendor}\n"
        )
        print(
            table(
                ["engines", "concurrency", "runs", "seconds", "runs/s", "median run ms", "status"],
                [
                    [
                        f"{engines}/{args.engines}",
                        args.concurrency,
                        args.runs,
                        f"{seconds:.1f}",
                        f"{args.runs / seconds:.1f}",
                        statistics.median(durations) * 1000,
                        ",".join(statuses),
                    ]
                ],
            )
        )
        print(f"\n(queueing {args.runs} runs took {queue_seconds:.2f} s, not counted)")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
