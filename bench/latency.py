"""Latency of one run through the engine, next to the raw equivalent, per executor.

    .venv/bin/python bench/latency.py [--executor local|docker|both] [--runs 20]
        [--requirements] [--compare /path/to/other/checkout]

For a trivial pipeline (`print('hello')`), N runs one after another through a real
`runscheduler` subprocess, each triggered with `run_enqueue` (what the admin and the API call),
interleaved with N raw runs of the same command (`uv run` locally, `docker run` of the same
image with the same lock-down flags). With `--requirements`, a second pipeline that imports a
package from its `requirements.txt` (warmed up first, so its setup is the warm one). With
`--compare`, the same benchmark runs on the other checkout's code too (e.g. main's, before a
change) in the same session, and both are printed side by side. Reported (median / p95, ms):

  trigger → RUNNING      queued_at → started_at (the engine claimed it)
  trigger → first line   queued_at → timestamp of the first log line
  trigger → SUCCESS      queued_at → finished_at
  setup_duration         container/process start → user code begins (warm cache)

and for the raw runs: start → first output line, start → exit. Not a test: numbers depend on
the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Bench, summary, table, wait_finished  # noqa: E402

WITH_REQUIREMENTS = "import tomli_w\nprint(tomli_w.dumps({'hello': 1}).strip())\n"
REQUIREMENT = "tomli-w==1.0.0\n"


def first_line_time(log_file: str):
    """The time of the first line the pipeline printed, in either log format (the one with
    sources, `o <time> text`, and the one before it, `<time> text` with `[fastflow] ` notes),
    so the same benchmark reads logs of older code."""
    for line in Path(log_file).read_text().splitlines():
        fields = line.split(" ", 2)
        if len(fields[0]) == 1:  # source, time, text
            if fields[0] in "oe" and len(fields) > 1:
                return _parse_time(fields[1])
        elif not line.split(" ", 1)[-1].startswith("[fastflow] "):
            return _parse_time(fields[0])
    return None


def _parse_time(text: str):
    from datetime import UTC, datetime

    return datetime.strptime(text.removesuffix("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


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


def raw_command(
    executor: str, folder: Path, *, requirements: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The raw equivalent: `uv run` of the same requirements on the same (warm) shared cache,
    as a user would run the pipeline by hand (`--offline`: the fastest uv gets on a warm cache),
    with the same lock-down flags in Docker."""
    from django.conf import settings

    python_version = settings.FASTFLOW_DEFAULT_PYTHON_VERSION
    if executor == "local":
        from runs_app.engine.local_executor import clean_path, local_python, uv_binary
        from runs_app.engine.uvcache import uv_cache_dir

        command = [uv_binary(), "run", "--no-project", "--python", local_python(python_version)]
        if requirements:
            command += ["--offline", "--with-requirements", str(folder / "requirements.txt")]
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
        "uv", "run", "--no-project", "--python", python_version,
        *(["--offline", "--with-requirements", "/app/requirements.txt"] if requirements else []),
        "python", "-u", "main.py",
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


def warm(pipeline, executor: str) -> None:
    """Prepare the pipeline's requirements the way the engine's leader does, and wait for it."""
    from django.conf import settings

    from runs_app.engine.executors import get_executor
    from runs_app.engine.warmup import warm_cache

    result = warm_cache(
        pipeline_name=pipeline.pipeline_name,
        pipeline_dir=pipeline.folder,
        python_version=settings.FASTFLOW_DEFAULT_PYTHON_VERSION,
        executor=get_executor(executor),
    )
    if not result.ok:
        raise SystemExit(f"the warm-up of {pipeline.pipeline_name} failed: {result.message}")
    from django.utils import timezone

    # Recorded as the leader does, so the engine does not warm it again mid-measurement.
    type(pipeline).objects.filter(pk=pipeline.pk).update(last_cache_warmup=timezone.now())


def measure(
    bench: Bench, executor: str, runs: int, warmup: int, *, requirements: bool = False
) -> list[list[object]]:
    engine = bench.start_engine(FASTFLOW_EXECUTOR=executor)
    if requirements:
        pipeline = bench.pipeline(f"reqs_{executor}", WITH_REQUIREMENTS, REQUIREMENT)
        warm(pipeline, executor)
    else:
        pipeline = bench.pipeline(f"trivial_{executor}")
    command, env = raw_command(
        executor, bench.pipelines / pipeline.pipeline_name, requirements=requirements
    )
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
        name = f"{executor}{' + requirements' if requirements else ''}"
        result.append([name, label, median, p95, raw_median, raw_p95, overhead])
    return result


HEADERS = [
    "executor",
    "metric",
    "engine median",
    "engine p95",
    "raw median",
    "raw p95",
    "overhead (median)",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("local", "docker", "both"), default="local")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--requirements", action="store_true", help="also a pipeline with requirements.txt"
    )
    parser.add_argument(
        "--compare", metavar="CHECKOUT", help="run the same on another checkout's code too"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temp installation")
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    executors = ["local", "docker"] if args.executor == "both" else [args.executor]

    bench = Bench(executor=executors[0], keep=args.keep)
    try:
        bench.prepare()
        from django.db import connection

        rows = []
        for executor in executors:
            rows += measure(bench, executor, args.runs, args.warmup)
            if args.requirements:
                rows += measure(bench, executor, args.runs, args.warmup, requirements=True)
        if args.json:
            print(json.dumps(rows))
            return
        print(
            f"\n{args.runs} sequential runs per executor after {args.warmup} warm-up runs; "
            f"database: {connection.vendor}; code: {ROOT}; times in ms\n"
        )
        print(table(HEADERS, rows))
    finally:
        bench.close()


def compare(args: argparse.Namespace) -> None:
    """This checkout's code and another's, one after the other in this session (each in its
    own process and throwaway installation), printed in one table."""
    roots = {"this": str(Path(__file__).resolve().parent.parent), "other": args.compare}
    passed = [f"--executor={args.executor}", f"--runs={args.runs}", f"--warmup={args.warmup}"]
    if args.requirements:
        passed.append("--requirements")
    rows = []
    for label, root in roots.items():
        done = subprocess.run(
            [sys.executable, __file__, *passed, "--json"],
            env={**os.environ, "FASTFLOW_BENCH_CODE_ROOT": root},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the benchmark on {root} failed:\n{done.stdout}\n{done.stderr}")
        rows += [[f"{label}: {root}", *row] for row in json.loads(done.stdout.splitlines()[-1])]
    print(f"\n{args.runs} sequential runs per executor and checkout; times in ms\n")
    print(table(["code", *HEADERS], sorted(rows, key=lambda r: (r[1], r[2], r[0]))))
    print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
