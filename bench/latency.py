"""Latency of one run through the engine, next to the raw equivalent, per executor.

    .venv/bin/python bench/latency.py [--executor local|docker|both] [--runs 20]
                                      [--network none,bridge]

For a trivial pipeline (`print('hello')`), N runs one after another through a real
`runscheduler` subprocess, each triggered with `run_enqueue` (what the admin and the API call),
interleaved with N raw runs of the same command (`uv run` locally, `docker run` of the same
image with the same lock-down flags). Reported (median / p95, ms):

  trigger → RUNNING      queued_at → started_at (the engine claimed it)
  trigger → first line   queued_at → timestamp of the first log line
  trigger → SUCCESS      queued_at → finished_at
  setup_duration         container/process start → user code begins (warm cache)

then the same runs cut into segments (claim, hand-over = claimed → process/container started,
start → first line, first → last line, last line → recorded), next to the raw run's start →
first line and last line → exit. Docker runs once per `--network` (each with its own engine and
the raw `docker run --network` alike). Not a test: numbers depend on the machine. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Bench, summary, table, wait_finished  # noqa: E402


def output_line_times(log_file: str):
    """Timestamps of the first and the last line the pipeline printed (engine notes skipped)."""
    from runs_app.logs import NOTE_PREFIX, parse_timestamp

    stamps = []
    for line in Path(log_file).read_text().splitlines():
        stamp, _, text = line.partition(" ")
        if not text.startswith(NOTE_PREFIX):
            stamps.append(parse_timestamp(stamp))
    return (stamps[0], stamps[-1]) if stamps else (None, None)


def seconds(later, earlier) -> float | None:
    return (later - earlier).total_seconds() if later and earlier else None


def engine_run(pipeline) -> dict[str, float | None]:
    from runs_app.services import run_enqueue

    run = wait_finished(run_enqueue(pipeline=pipeline, triggered_by="manual"))
    if run.status != "SUCCESS":
        raise SystemExit(f"run {run.id} ended {run.status}: {run.error_message}")
    first, last = output_line_times(run.log_file)
    to_first = seconds(first, run.started_at)
    return {
        "running": seconds(run.started_at, run.queued_at),
        "first_line": seconds(first, run.queued_at),
        "success": seconds(run.finished_at, run.queued_at),
        "setup": run.setup_duration,
        # Segments. The process/container started setup_duration before its ready line, which
        # the first output line follows within a millisecond.
        "claim": seconds(run.started_at, run.queued_at),
        "handover": to_first - run.setup_duration if to_first and run.setup_duration else None,
        "start_first": run.setup_duration,
        "first_last": seconds(last, first),
        "last_recorded": seconds(run.finished_at, last),
    }


def raw_command(
    executor: str, folder: Path, network: str = "none"
) -> tuple[list[str], dict[str, str]]:
    from django.conf import settings

    python_version = settings.FASTFLOW_DEFAULT_PYTHON_VERSION
    if executor == "local":
        from runs_app.engine.local_executor import local_env, local_uv_command

        command = local_uv_command(
            pipeline_dir=folder, python_version=python_version, requirements=False
        )
        # The environment the engine gives a run (the host's TLS and proxy variables, the
        # engine's uv cache): uv reads SSL_CERT_FILE / SSL_CERT_DIR at every start, so a raw
        # run without them would be measuring a different uv.
        home = Path(tempfile.mkdtemp(prefix="fastflow-bench-raw-"))
        env = local_env(run_id="raw", pipeline_name=folder.name, user_env={}, home=home)
        return [*command, "python", "-u", "main.py"], env
    from runs_app.engine.docker_executor import image_name
    from runs_app.engine.uvcache import uv_cache_dir

    command = [
        "docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp",  # noqa: S108 - inside the container
        "--user", settings.FASTFLOW_RUNNER_USER, "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--network", network,
        "-v", f"{folder}:/app:ro", "-v", f"{uv_cache_dir('docker', world_writable=True)}:/cache/uv",
        "-e", "UV_CACHE_DIR=/cache/uv", "-e", "UV_PYTHON_DOWNLOADS=never", "-e", "HOME=/tmp",
        "-w", "/app", image_name(python_version),
        "uv", "run", "--no-project", "--python", python_version, "python", "-u", "main.py",
    ]  # fmt: skip
    return command, dict(os.environ)


def raw_run(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float | None]:
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own scheduler autogroup, as the engine's runs get
    )
    first = last = None
    for line in process.stdout:
        if line.strip():
            last = time.monotonic() - started
            first = last if first is None else first
    code = process.wait()
    ended = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"raw run failed with exit code {code}: {' '.join(command)}")
    return {
        "first_line": first,
        "success": ended,
        "start_first": first,
        "first_last": last - first if first is not None else None,
        "last_recorded": ended - last if last is not None else None,
    }


def measure(
    bench: Bench, executor: str, runs: int, warmup: int, network: str = "none"
) -> tuple[list[list[object]], list[list[object]]]:
    label = executor if executor == "local" else f"docker ({network})"
    engine = bench.start_engine(FASTFLOW_EXECUTOR=executor, FASTFLOW_RUNNER_NETWORK=network)
    pipeline = bench.pipeline(f"trivial_{executor}_{network}")
    folder = bench.pipelines / pipeline.pipeline_name
    command, env = raw_command(executor, folder, network)
    for _ in range(warmup):  # warm caches, the image, the engine's first-use paths
        engine_run(pipeline)
        raw_run(command, env, folder)
    ours: list[dict] = []
    raw: list[dict] = []
    for _ in range(runs):
        ours.append(engine_run(pipeline))
        raw.append(raw_run(command, env, folder))
    engine.terminate()
    engine.wait(30)

    def col(rows: list[dict], key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    def row(name: str, key: str) -> list[object]:
        median, p95 = summary(col(ours, key))
        raw_median, raw_p95 = summary(col(raw, key))
        overhead = median - raw_median if raw_median == raw_median else float("nan")
        return [label, name, median, p95, raw_median, raw_p95, overhead]

    totals = [
        row("trigger → RUNNING", "running"),
        row("trigger → first line", "first_line"),
        row("trigger → SUCCESS", "success"),
        row("setup_duration (warm)", "setup"),
    ]
    segments = [
        row("claim (queued → claimed)", "claim"),
        row("hand-over (claimed → started)", "handover"),
        row("started → first line", "start_first"),
        row("first → last line", "first_last"),
        row("last line → recorded / exit", "last_recorded"),
    ]
    return totals, segments


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("local", "docker", "both"), default="local")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--network",
        default="none,bridge",
        help="docker: comma-separated networks to measure (default none,bridge)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp installation")
    args = parser.parse_args()
    executors = ["local", "docker"] if args.executor == "both" else [args.executor]
    networks = [n.strip() for n in args.network.split(",") if n.strip()]

    bench = Bench(executor=executors[0], keep=args.keep)
    try:
        bench.prepare()
        from django.conf import settings
        from django.db import connection

        load_before = load_average()
        totals: list[list[object]] = []
        segments: list[list[object]] = []
        for executor in executors:
            for network in networks if executor == "docker" else ["none"]:
                t, s = measure(bench, executor, args.runs, args.warmup, network)
                totals += t
                segments += s
        headers = [
            "executor",
            "metric",
            "engine median",
            "engine p95",
            "raw median",
            "raw p95",
            "overhead (median)",
        ]
        print(
            f"\n{args.runs} sequential runs per executor after {args.warmup} warm-up runs; "
            f"database: {connection.vendor}; times in ms; load average before "
            f"{load_before}, after {load_average()} (1, 5, 15 min); runs without a network of "
            f"their own get FASTFLOW_RUNNER_NETWORK={settings.FASTFLOW_RUNNER_NETWORK}\n"
        )
        print(table(headers, totals))
        print("\nSegments (raw: process start → first line, first → last line, last → exit)\n")
        print(table(headers, segments))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
