"""How late the web side sees a live run's lines: local files next to FASTFLOW_RUN_STORAGE=s3.

    .venv/bin/python bench/live_output.py [--runs 5] [--interval 1.0]

One session, one database, two engines one after the other: one with local storage (the web
side reads the engine's file), one with `s3` and a data dir of its own (the web side reads the
database while the run is live, the bucket after it: moto's S3 server on 127.0.0.1). The
pipeline prints a line with its wall time every 0.1 s for 3 s; this process, the web side,
reads the log through `runs_app.run_output` every 10 ms and notes when each line becomes
visible. Reported (median / p95, ms): print → visible, trigger → SUCCESS, and for s3
SUCCESS → archived. Not a test: numbers depend on the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Bench, summary, table, wait_finished  # noqa: E402

PRINTING = (
    "import time\nfor i in range(30):\n    print('at', repr(time.time()), flush=True)\n"
    "    time.sleep(0.1)\n"
)


def follow(run, seen: dict[str, float]) -> None:
    """Poll the log as the API does until the run has ended; note each line's first sight."""
    from runs_app.logs import log_lines_parse
    from runs_app.run_output import log_read

    offset = 0
    while True:
        run.refresh_from_db()
        data, offset_next = log_read(run=run, offset=offset, limit=1 << 20)
        now = time.time()
        for line in log_lines_parse(data):
            if line.text.startswith("at "):
                seen.setdefault(line.text, now)
        offset = offset_next
        if run.is_terminal and not data:
            return
        time.sleep(0.01)


def measure(bench: Bench, pipeline, runs: int, label: str) -> list[object]:
    from runs_app.services import run_enqueue

    delays: list[float] = []
    totals: list[float] = []
    archived: list[float] = []
    for _ in range(runs):
        run = run_enqueue(pipeline=pipeline, triggered_by="manual")
        seen: dict[str, float] = {}
        follow(run, seen)
        wait_finished(run)
        delays += [at - float(text.split()[1]) for text, at in seen.items()]
        totals.append((run.finished_at - run.queued_at).total_seconds())
        if run.log_file and not run.log_file.startswith("/"):
            deadline = time.monotonic() + 60
            while run.output_archived_at is None and time.monotonic() < deadline:
                time.sleep(0.01)
                run.refresh_from_db()
            if run.output_archived_at is not None:
                archived.append((run.output_archived_at - run.finished_at).total_seconds())
    row: list[object] = [label, len(delays), *summary(delays), *summary(totals)]
    row += list(summary(archived)) if archived else ["—", "—"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    from tests.helpers_object_store import new_bucket, object_store_env, s3_server_start

    bench = Bench(executor="local")
    server = s3_server_start(bench.tmp / "moto.out")
    s3 = object_store_env(
        server, new_bucket(server), FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS=str(args.interval)
    )
    bench.env.update(s3)  # this process (the web side) can read the bucket
    try:
        bench.prepare()
        pipeline = bench.pipeline("printing", PRINTING)
        rows = []
        engine = bench.start_engine(FASTFLOW_RUN_STORAGE="local")
        rows.append(measure(bench, pipeline, args.runs, "local (shared data dir)"))
        engine.terminate()
        engine.wait(30)
        bench.start_engine(FASTFLOW_DATA_DIR=str(bench.tmp / "engine-host-data"))
        rows.append(measure(bench, pipeline, args.runs, f"s3 (interval {args.interval:g} s)"))
        print(
            table(
                [
                    "storage",
                    "lines",
                    "print→visible median",
                    "p95",
                    "trigger→SUCCESS median",
                    "p95",
                    "SUCCESS→archived median",
                    "p95",
                ],
                rows,
            )
        )
    finally:
        bench.close()
        server.stop()


if __name__ == "__main__":
    main()
