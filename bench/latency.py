"""Latency of one run through the engine, next to the raw equivalent, per executor.

    .venv/bin/python bench/latency.py [--executor local|docker|both] [--runs 20]
        [--network none,bridge] [--requirements] [--compare /path/to/other/checkout]

For a trivial pipeline (`print('hello')`), N runs one after another through a real
`runscheduler` subprocess, each triggered with `run_enqueue` (what the admin and the API call),
interleaved with N raw runs of the same command (`uv run` locally, `docker run` of the same
image with the same lock-down flags). With `--requirements`, a second pipeline that imports a
package from its `requirements.txt` (warmed up first, so its setup is the warm one). Docker
runs once per `--network` (each with its own engine and the raw `docker run --network` alike).
With `--compare`, the same benchmark runs on the other checkout's code too (e.g. main's, before
a change) in the same session, and both are printed side by side. Reported (median / p95, ms):

  trigger → RUNNING      queued_at → started_at (the engine claimed it)
  trigger → first line   queued_at → timestamp of the first log line
  trigger → SUCCESS      queued_at → finished_at
  setup_duration         container/process start → user code begins (warm cache)

then the same runs cut into segments (claim, hand-over = claimed → process/container started,
start → first line, first → last line, last line → recorded), next to the raw run's start →
first line and last line → exit. Not a test: numbers depend on the machine. See
bench/README.md.
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

RAW_MODES = ("direct", "uv")
WITH_REQUIREMENTS = "import tomli_w\nprint(tomli_w.dumps({'hello': 1}).strip())\n"
REQUIREMENT = "tomli-w==1.0.0\n"


def output_line_times(log_file: str):
    """Times of the first and the last line the pipeline printed (engine notes skipped), in
    either log format (the one with sources, `o <time> text`, and the one before it,
    `<time> text` with `[fastflow] ` notes), so the same benchmark reads logs of older code."""
    stamps = []
    for line in Path(log_file).read_text().splitlines():
        fields = line.split(" ", 2)
        if len(fields[0]) == 1:  # source, time, text
            if fields[0] in "oe" and len(fields) > 1:
                stamps.append(_parse_time(fields[1]))
        elif not line.split(" ", 1)[-1].startswith("[fastflow] "):
            stamps.append(_parse_time(fields[0]))
    return (stamps[0], stamps[-1]) if stamps else (None, None)


def _parse_time(text: str):
    from datetime import UTC, datetime

    return datetime.strptime(text.removesuffix("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


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
    executor: str,
    folder: Path,
    network: str = "none",
    *,
    requirements: bool = False,
    mode: str = "direct",
    venv: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The raw equivalent of a run, with the same lock-down flags and network in Docker.

    `direct` (the default): the command the engine runs, minus its wrapper — the interpreter,
    or for requirements the interpreter of `venv`, an environment built like the warm-up's
    (`raw_environment`), mounted read-only at /venv in Docker. `uv`: `uv run` of the same
    requirements on the warm shared cache, as a user would run the pipeline by hand
    (`--offline`: the fastest uv gets on a warm cache); what runs did before they got
    prepared environments."""
    if requirements and mode == "direct" and venv is None:
        raise ValueError("a direct raw run with requirements needs its environment (venv)")
    if executor == "local":
        return _raw_local(folder, requirements=requirements, mode=mode, venv=venv)
    return _raw_docker(folder, network, requirements=requirements, mode=mode, venv=venv)


def _raw_local(
    folder: Path, *, requirements: bool, mode: str, venv: Path | None
) -> tuple[list[str], dict[str, str]]:
    from django.conf import settings

    from runs_app.engine.local_executor import local_env, local_python, uv_binary
    from runs_app.engine.uvcache import uv_cache_dir

    python = local_python(settings.FASTFLOW_DEFAULT_PYTHON_VERSION)
    if mode == "uv":
        command = [uv_binary(), "run", "--no-project", "--python", python]
        if requirements:
            command += ["--offline", "--with-requirements", str(folder / "requirements.txt")]
        command.append("python")
    else:
        command = [str(venv / "bin" / "python") if requirements else python]
    # The environment the engine gives a run (the host's TLS and proxy variables among
    # others): uv reads SSL_CERT_FILE / SSL_CERT_DIR at every start, so a raw run without them
    # would be measuring a different uv. The cache is the warm shared one.
    home = Path(tempfile.mkdtemp(prefix="fastflow-bench-raw-"))
    env = local_env(run_id="raw", pipeline_name=folder.name, user_env={}, home=home)
    env["UV_CACHE_DIR"] = str(uv_cache_dir("local"))
    if requirements and mode == "direct":
        env["VIRTUAL_ENV"] = str(venv)
    return [*command, "-u", "main.py"], env


def _raw_docker(
    folder: Path, network: str, *, requirements: bool, mode: str, venv: Path | None
) -> tuple[list[str], dict[str, str]]:
    from django.conf import settings

    from runs_app.engine.docker_executor import image_name
    from runs_app.engine.uvcache import uv_cache_dir

    version = settings.FASTFLOW_DEFAULT_PYTHON_VERSION
    image = image_name(version)
    command = [
        "docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp",  # noqa: S108 - inside the container
        "--user", settings.FASTFLOW_RUNNER_USER, "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--network", network,
        "-v", f"{folder}:/app:ro", "-e", "HOME=/tmp", "-w", "/app",
    ]  # fmt: skip
    if mode == "uv":
        cache = uv_cache_dir("docker", world_writable=True)
        with_requirements = ["--offline", "--with-requirements", "/app/requirements.txt"]
        command += [
            "-v", f"{cache}:/cache/uv", "-e", "UV_CACHE_DIR=/cache/uv",
            "-e", "UV_PYTHON_DOWNLOADS=never", image,
            "uv", "run", "--no-project", "--python", version,
            *(with_requirements if requirements else []), "python",
        ]  # fmt: skip
    elif requirements:
        command += ["-v", f"{venv}:/venv:ro", "-e", "VIRTUAL_ENV=/venv", image, "/venv/bin/python"]
    else:
        command += [image, "python" + version]
    return [*command, "-u", "main.py"], dict(os.environ)


def raw_environment(executor: str, folder: Path, target: Path) -> Path:
    """The raw side's prepared environment for the pipeline's requirements, built at `target`
    as the warm-up builds the engine's (`uv venv`, then `uv pip install`, copies, bytecode
    compiled) from the shared cache the warm-up filled (`--offline`). Built with the tools of
    the benchmark, not of the code under test, so `--compare` measures the same raw side."""
    from django.conf import settings

    from runs_app.engine.uvcache import uv_cache_dir

    python_version = settings.FASTFLOW_DEFAULT_PYTHON_VERSION
    install = ["pip", "install", "--offline", "--link-mode", "copy", "--compile-bytecode"]
    if executor == "local":
        from runs_app.engine.local_executor import local_python, uv_binary

        env = {**os.environ, "UV_CACHE_DIR": str(uv_cache_dir("local"))}
        uv = uv_binary()
        subprocess.run(
            [uv, "venv", "--python", local_python(python_version), str(target)],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [uv, *install, "--python", str(target / "bin" / "python")]
            + ["-r", str(folder / "requirements.txt")],
            env=env,
            check=True,
            capture_output=True,
        )
        return target
    from runs_app.engine.docker_executor import image_name

    target.mkdir(parents=True)
    target.chmod(0o777)  # noqa: S103 - written by the runner uid, like the warm-up's build dir
    cache = uv_cache_dir("docker", world_writable=True)
    script = (
        f"uv venv --python {python_version} /venv && "
        f"uv {' '.join(install)} --python /venv/bin/python -r /app/requirements.txt"
    )
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            settings.FASTFLOW_RUNNER_USER,
            "-v",
            f"{folder}:/app:ro",
            "-v",
            f"{cache}:/cache/uv",
            "-v",
            f"{target}:/venv",
            "-e",
            "UV_CACHE_DIR=/cache/uv",
            "-e",
            "UV_PYTHON_DOWNLOADS=never",
            "-e",
            "HOME=/tmp",
            image_name(python_version),
            "sh",
            "-c",
            script,
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    return target


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


TOTALS = (
    ("trigger → RUNNING", "running"),
    ("trigger → first line", "first_line"),
    ("trigger → SUCCESS", "success"),
    ("setup_duration (warm)", "setup"),
)
SEGMENTS = (
    ("claim (queued → claimed)", "claim"),
    ("hand-over (claimed → started)", "handover"),
    ("started → first line", "start_first"),
    ("first → last line", "first_last"),
    ("last line → recorded / exit", "last_recorded"),
)


def measure(
    bench: Bench,
    executor: str,
    runs: int,
    warmup: int,
    network: str = "none",
    *,
    requirements: bool = False,
    raw_mode: str = "direct",
    pool: int = 0,
) -> tuple[list[list[object]], list[list[object]]]:
    label = executor if executor == "local" else f"docker ({network}{', pool' if pool else ''})"
    label += " + requirements" if requirements else ""
    # The pipeline before the engine: a leader's sync that listed the folder before it existed
    # would mark the new row missing.
    name = f"{'reqs' if requirements else 'trivial'}_{executor}_{network}{'_pool' if pool else ''}"
    if requirements:
        pipeline = bench.pipeline(name, WITH_REQUIREMENTS, REQUIREMENT)
        warm(pipeline, executor)
    else:
        pipeline = bench.pipeline(name)
    engine = bench.start_engine(
        FASTFLOW_EXECUTOR=executor,
        FASTFLOW_RUNNER_NETWORK=network,
        FASTFLOW_DOCKER_POOL_SIZE=str(pool),
    )
    folder = bench.pipelines / pipeline.pipeline_name
    venv = None
    if requirements and raw_mode == "direct":
        venv = raw_environment(executor, folder, bench.tmp / f"raw-venv-{name}")
    command, env = raw_command(
        executor, folder, network, requirements=requirements, mode=raw_mode, venv=venv
    )
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

    def row(metric: str, key: str) -> list[object]:
        median, p95 = summary(col(ours, key))
        raw_median, raw_p95 = summary(col(raw, key))
        overhead = median - raw_median if raw_median == raw_median else float("nan")
        return [label, metric, median, p95, raw_median, raw_p95, overhead]

    return [row(*m) for m in TOTALS], [row(*m) for m in SEGMENTS]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


HEADERS = [
    "executor",
    "metric",
    "engine median",
    "engine p95",
    "raw median",
    "raw p95",
    "overhead (median)",
]
SEGMENTS_TITLE = "Segments (raw: process start → first line, first → last line, last → exit)"


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
    parser.add_argument(
        "--requirements", action="store_true", help="also a pipeline with requirements.txt"
    )
    parser.add_argument(
        "--compare", metavar="CHECKOUT", help="run the same on another checkout's code too"
    )
    parser.add_argument(
        "--raw",
        choices=RAW_MODES,
        default="direct",
        help="raw side: the engine's command without the engine (direct), or uv run (uv)",
    )
    parser.add_argument(
        "--pool",
        default="0,4",
        help="docker: comma-separated warm pool sizes to measure (0: no pool; default 0,4)",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temp installation")
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    executors = ["local", "docker"] if args.executor == "both" else [args.executor]
    networks = [n.strip() for n in args.network.split(",") if n.strip()]
    pools = [int(n) for n in args.pool.split(",") if n.strip()]

    bench = Bench(executor=executors[0], keep=args.keep)
    try:
        bench.prepare()
        from django.db import connection

        load_before = load_average()
        totals: list[list[object]] = []
        segments: list[list[object]] = []
        for executor in executors:
            for network in networks if executor == "docker" else ["none"]:
                for pool in pools if executor == "docker" else [0]:
                    for requirements in (False, True) if args.requirements else (False,):
                        t, s = measure(
                            bench,
                            executor,
                            args.runs,
                            args.warmup,
                            network,
                            requirements=requirements,
                            raw_mode=args.raw,
                            pool=pool,
                        )
                        totals += t
                        segments += s
        if args.json:
            print(json.dumps({"totals": totals, "segments": segments}))
            return
        print(
            f"\n{args.runs} sequential runs per executor after {args.warmup} warm-up runs; "
            f"database: {connection.vendor}; code: {ROOT}; raw: {args.raw}; times in ms; "
            "load average before "
            f"{load_before}, after {load_average()} (1, 5, 15 min)\n"
        )
        print(table(HEADERS, totals))
        print(f"\n{SEGMENTS_TITLE}\n")
        print(table(HEADERS, segments))
    finally:
        bench.close()


def compare(args: argparse.Namespace) -> None:
    """This checkout's code and another's, one after the other in this session (each in its
    own process and throwaway installation), printed in one table."""
    roots = {"this": str(Path(__file__).resolve().parent.parent), "other": args.compare}
    passed = [f"--executor={args.executor}", f"--runs={args.runs}", f"--warmup={args.warmup}"]
    passed += [f"--network={args.network}", f"--raw={args.raw}", f"--pool={args.pool}"]
    if args.requirements:
        passed.append("--requirements")
    load_before = load_average()
    totals, segments = [], []
    for label, root in roots.items():
        done = subprocess.run(
            [sys.executable, __file__, *passed, "--json"],
            env={**os.environ, "FASTFLOW_BENCH_CODE_ROOT": root},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the benchmark on {root} failed:\n{done.stdout}\n{done.stderr}")
        result = json.loads(done.stdout.splitlines()[-1])
        totals += [[f"{label}: {root}", *row] for row in result["totals"]]
        segments += [[f"{label}: {root}", *row] for row in result["segments"]]

    def ordered(rows: list[list[object]]) -> list[list[object]]:
        return sorted(rows, key=lambda r: (r[1], r[2], r[0]))

    print(
        f"\n{args.runs} sequential runs per executor and checkout; raw: {args.raw}; times in "
        "ms; load average "
        f"before {load_before}, after {load_average()} (1, 5, 15 min)\n"
    )
    print(table(["code", *HEADERS], ordered(totals)))
    print(f"\n{SEGMENTS_TITLE}\n")
    print(table(["code", *HEADERS], ordered(segments)))


if __name__ == "__main__":
    main()
