"""Latency of one run through the engine, next to the raw equivalent, per executor.

    .venv/bin/python bench/latency.py [--executor local|docker|both] [--runs 20]

For a trivial pipeline (`print('hello')`), N runs one after another through a real
`runscheduler` subprocess, each triggered with `run_enqueue` (what the admin and the API call),
interleaved with N raw runs of the same command (`uv run` locally, `docker run` of the same
image with the same lock-down flags). Reported (median / p95, ms):

  trigger → RUNNING      queued_at → started_at (the engine claimed it)
  trigger → first line   queued_at → timestamp of the first log line
  trigger → SUCCESS      queued_at → finished_at
  setup_duration         container/process start → user code begins (warm cache)

and for the raw runs: start → first output line, start → exit. Not a test: numbers depend on
the machine. See bench/README.md.
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


def first_line_time(log_file: str):
    from runs_app.logs import NOTE_PREFIX, parse_timestamp

    for line in Path(log_file).read_text().splitlines():
        stamp, _, text = line.partition(" ")
        if not text.startswith(NOTE_PREFIX):
            return parse_timestamp(stamp)
    return None


def engine_run(pipeline) -> dict[str, float | None]:
    from runs_app.services import run_enqueue

    run = wait_finished(run_enqueue(pipeline=pipeline, triggered_by="manual"))
    if run.status != "SUCCESS":
        raise SystemExit(f"run {run.id} ended {run.status}: {run.error_message}")
    first = first_line_time(run.log_file)
    return {
        "running": (run.started_at - run.queued_at).total_seconds(),
        "first_line": (first - run.queued_at).total_seconds() if first else None,
        "success": (run.finished_at - run.queued_at).total_seconds(),
        "setup": run.setup_duration,
    }


def raw_command(executor: str, folder: Path) -> tuple[list[str], dict[str, str]]:
    from django.conf import settings

    python_version = settings.FASTFLOW_DEFAULT_PYTHON_VERSION
    if executor == "local":
        from runs_app.engine.local_executor import clean_path, local_uv_command
        from runs_app.engine.uvcache import uv_cache_dir

        command = local_uv_command(
            pipeline_dir=folder, python_version=python_version, requirements=False
        )
        env = {
            "PATH": clean_path(),
            "HOME": tempfile.gettempdir(),
            "UV_CACHE_DIR": str(uv_cache_dir("local")),
            "UV_PYTHON_DOWNLOADS": "never",
        }
        return [*command, "python", "-u", str(folder / "main.py")], env
    from runs_app.engine.docker_executor import image_name
    from runs_app.engine.uvcache import uv_cache_dir

    command = [
        "docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp",  # noqa: S108 - inside the container
        "--user", settings.FASTFLOW_RUNNER_USER, "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--network", settings.FASTFLOW_RUNNER_NETWORK,
        "-v", f"{folder}:/app:ro", "-v", f"{uv_cache_dir('docker', world_writable=True)}:/cache/uv",
        "-e", "UV_CACHE_DIR=/cache/uv", "-e", "UV_PYTHON_DOWNLOADS=never", "-e", "HOME=/tmp",
        "-w", "/app", image_name(python_version),
        "uv", "run", "--no-project", "--python", python_version, "python", "-u", "main.py",
    ]  # fmt: skip
    return command, dict(os.environ)


def raw_run(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float | None]:
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    first = None
    for line in process.stdout:
        if first is None and line.strip():
            first = time.monotonic() - started
    code = process.wait()
    if code != 0:
        raise SystemExit(f"raw run failed with exit code {code}: {' '.join(command)}")
    return {"first_line": first, "success": time.monotonic() - started}


def measure(bench: Bench, executor: str, runs: int, warmup: int) -> list[list[object]]:
    engine = bench.start_engine(FASTFLOW_EXECUTOR=executor)
    pipeline = bench.pipeline(f"trivial_{executor}")
    command, env = raw_command(executor, bench.pipelines / pipeline.pipeline_name)
    for _ in range(warmup):  # warm caches, the image, the engine's first-use paths
        engine_run(pipeline)
        raw_run(command, env, bench.pipelines / pipeline.pipeline_name)
    ours: list[dict] = []
    raw: list[dict] = []
    for _ in range(runs):
        ours.append(engine_run(pipeline))
        raw.append(raw_run(command, env, bench.pipelines / pipeline.pipeline_name))
    engine.terminate()
    engine.wait(30)

    def col(rows: list[dict], key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    result = []
    for label, key in (
        ("trigger → RUNNING", "running"),
        ("trigger → first line", "first_line"),
        ("trigger → SUCCESS", "success"),
        ("setup_duration (warm)", "setup"),
    ):
        median, p95 = summary(col(ours, key))
        raw_median, raw_p95 = (
            summary(col(raw, key))
            if key in ("first_line", "success")
            else (
                float("nan"),
                float("nan"),
            )
        )
        overhead = median - raw_median if raw_median == raw_median else float("nan")
        result.append([executor, label, median, p95, raw_median, raw_p95, overhead])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("local", "docker", "both"), default="local")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp installation")
    args = parser.parse_args()
    executors = ["local", "docker"] if args.executor == "both" else [args.executor]

    bench = Bench(executor=executors[0], keep=args.keep)
    try:
        bench.prepare()
        from django.db import connection

        rows = []
        for executor in executors:
            rows += measure(bench, executor, args.runs, args.warmup)
        print(
            f"\n{args.runs} sequential runs per executor after {args.warmup} warm-up runs; "
            f"database: {connection.vendor}; times in ms\n"
        )
        print(
            table(
                [
                    "executor",
                    "metric",
                    "engine median",
                    "engine p95",
                    "raw median",
                    "raw p95",
                    "overhead (median)",
                ],
                rows,
            )
        )
    finally:
        bench.close()


if __name__ == "__main__":
    main()
