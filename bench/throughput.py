"""Throughput: queue many trivial runs and measure how fast the engine(s) get through them.

    .venv/bin/python bench/throughput.py [--executor local|docker] [--runs 200]
                                         [--concurrency 10[,2,4]] [--engines 1]
                                         [--network none|bridge] [--pool N] [--sleep S]

All runs are queued with `run_enqueue` before the engines start; runs/s is counted from the
first claim to the last finish (DB timestamps), so queueing speed is not part of it. Several
`--concurrency` values run one after another, each with a fresh engine and queue. Reported per
value: runs/s, the median run (claimed → finished), how many slots were busy (the most runs
RUNNING at once, and on average over the span, from the runs' own timestamps), and the CPU the
engine process used per run, its own and its children's (uv and the pipelines it started; the
docker executor's children are containers, not counted there), and on PostgreSQL the local
server's processes (its share of the same CPUs; SQLite's work is in the engine's own). Next to
it the raw equivalent: the same number of `uv run` (local) or `docker run --rm` (docker)
commands, `--concurrency` at a time, from a thread pool (`--no-raw`: left out, for comparing
engine builds or databases with each other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import TRIVIAL, Bench, table  # noqa: E402
from bench.latency import load_average, raw_command  # noqa: E402


def busy_slots(runs: list) -> tuple[int, float]:
    """(most runs RUNNING at once, average RUNNING over the span) from claim/finish times."""
    events = sorted(
        [(r.started_at, 1) for r in runs] + [(r.finished_at, -1) for r in runs],
        key=lambda e: (e[0], e[1]),
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    span = (max(r.finished_at for r in runs) - min(r.started_at for r in runs)).total_seconds()
    busy = sum((r.finished_at - r.started_at).total_seconds() for r in runs)
    return peak, busy / span if span else float("nan")


def process_cpu(pid: int) -> tuple[float, float]:
    """(own user+system seconds, reaped children's) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(v) / tick for v in fields[11:15])
    return utime + stime, cutime + cstime


def database_cpu() -> float | None:
    """User+system seconds of this machine's PostgreSQL server processes (a local server
    only: None on SQLite, whose work is inside the engine's own CPU). Backends of the pooled
    connections live through the burst, so their CPU is counted."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                total += process_cpu(int(comm.parent.name))[0]
        except OSError:
            continue  # gone meanwhile
    return total


def measure(bench: Bench, args: argparse.Namespace, concurrency: int) -> list[object]:
    from django.db.models import Max, Min

    from runs_app.models import TERMINAL_STATUSES, EngineInstance, PipelineRun
    from runs_app.services import run_enqueue

    PipelineRun.objects.all().delete()
    EngineInstance.objects.all().delete()
    body = f"import time\ntime.sleep({args.sleep})\nprint('hello')\n" if args.sleep else TRIVIAL
    pipeline = bench.pipeline(f"trivial_{concurrency}_{len(bench.engines)}", body)
    for _ in range(args.runs):
        run_enqueue(pipeline=pipeline, triggered_by="manual")
    env = {
        "FASTFLOW_MAX_CONCURRENT_RUNS": str(concurrency),
        "FASTFLOW_RUNNER_NETWORK": args.network,
        "FASTFLOW_DOCKER_POOL_SIZE": str(args.pool),
    }
    engines = [bench.start_engine(**env) for _ in range(args.engines)]
    # Started engines claim at once: CPU is counted from here, including the start-up.
    cpu_before = [process_cpu(e.pid) for e in engines]
    database_before = database_cpu()

    deadline = time.monotonic() + 60 + args.runs * 5
    done = PipelineRun.objects.filter(status__in=TERMINAL_STATUSES)
    while done.count() < args.runs:
        if time.monotonic() > deadline:
            raise SystemExit("runs did not finish in time")
        time.sleep(0.2)
    cpu_after = [process_cpu(e.pid) for e in engines]
    database_after = database_cpu()
    for engine in engines:
        engine.terminate()
        engine.wait(30)

    runs = list(PipelineRun.objects.all().only("started_at", "finished_at", "status"))
    span = PipelineRun.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    statuses = ",".join(sorted({r.status for r in runs}))
    durations = [(r.finished_at - r.started_at).total_seconds() for r in runs]
    peak, average = busy_slots(runs)
    own = sum(a[0] - b[0] for a, b in zip(cpu_after, cpu_before, strict=True))
    children = sum(a[1] - b[1] for a, b in zip(cpu_after, cpu_before, strict=True))
    raw_rate, raw_median = (
        raw_burst(args, bench, pipeline.pipeline_name, concurrency)
        if args.raw
        else (float("nan"), float("nan"))
    )
    return [
        args.engines,
        args.pool if args.executor == "docker" else "-",
        concurrency,
        args.runs,
        f"{args.runs / seconds:.1f}",
        statistics.median(durations) * 1000,
        f"{peak} / {average:.1f}",
        own * 1000 / args.runs,
        children * 1000 / args.runs,
        "-"
        if database_before is None or database_after is None
        else (database_after - database_before) * 1000 / args.runs,
        f"{raw_rate:.1f}",
        raw_median * 1000,
        statuses,
    ]


def raw_burst(
    args: argparse.Namespace, bench: Bench, name: str, concurrency: int
) -> tuple[float, float]:
    """The same burst without the engine: `--runs` raw commands, `concurrency` at a time."""
    folder = bench.pipelines / name
    command, env = raw_command(args.executor, folder, args.network)

    def one(_: int) -> float:
        # Its own HOME and TMPDIR, as the engine gives each run.
        with tempfile.TemporaryDirectory(prefix="fastflow-bench-raw-") as home:
            own = {**env, "HOME": home, "TMPDIR": home} if args.executor == "local" else env
            started = time.monotonic()
            subprocess.run(
                command,
                env=own,
                cwd=folder,
                capture_output=True,
                check=True,
                # Like the engine's runs: own session, so own scheduler autogroup; otherwise
                # all raw runs share the benchmark's CPU share on a loaded machine.
                start_new_session=True,
            )
            return time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        durations = list(pool.map(one, range(args.runs)))
    return args.runs / (time.monotonic() - started), statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("local", "docker"), default="local")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", default="10", help="comma-separated, e.g. 2,4,10")
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--network", default="none", help="docker: the runs' network")
    parser.add_argument(
        "--pool",
        type=int,
        default=4,
        help="docker: FASTFLOW_DOCKER_POOL_SIZE of the engines (0: no warm pool)",
    )
    parser.add_argument(
        "--sleep", type=float, default=0.0, help="each run sleeps this long (I/O-bound runs)"
    )
    parser.add_argument(
        "--no-raw",
        dest="raw",
        action="store_false",
        help="skip the raw bursts (comparing engine builds or databases with each other)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp installation")
    args = parser.parse_args()

    bench = Bench(executor=args.executor, keep=args.keep)
    try:
        bench.prepare()
        from django.db import connection

        before = load_average()
        rows = [measure(bench, args, int(c)) for c in args.concurrency.split(",")]
        network = f", network {args.network}" if args.executor == "docker" else ""
        what = f"sleeping {args.sleep:g} s" if args.sleep else "trivial"
        print(
            f"\n{args.runs} runs of a {what} pipeline, executor {args.executor}{network}, "
            f"database {connection.vendor}; load average before {before}, after "
            f"{load_average()}\n"
        )
        print(
            table(
                [
                    "engines",
                    "pool",
                    "concurrency",
                    "runs",
                    "runs/s",
                    "median run ms",
                    "busy slots max / avg",
                    "engine CPU ms/run",
                    "children CPU ms/run",
                    "PostgreSQL CPU ms/run",
                    "raw runs/s",
                    "raw median ms",
                    "status",
                ],
                rows,
            )
        )
    finally:
        bench.close()


if __name__ == "__main__":
    main()
