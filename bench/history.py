"""History at scale: every admin page and API endpoint, and the engine's own queries, with N runs
in the database.

    .venv/bin/python bench/history.py --runs 1000000 [--pipelines 50] [--days 90]
        [--pending 5000] [--repeat 5] [--dir DIR] [--markdown]
    DATABASE_URL=postgres://…/fastflow_bench .venv/bin/python bench/history.py --runs 1000000

1. The newest `pending` runs (PENDING, 5 % delayed) and 20 RUNNING runs are generated, and the
   engine's queries are timed with that queue alone: claim (rolled back), "any run due?", the
   queue depth, the reconcile scan of RUNNING runs.
2. The rest of the history is generated (bench/history_data.py: bulk INSERT … SELECT), the
   pipeline counters and hourly statistics computed, and the engine's queries timed again —
   side by side: O(pending) means the two columns match.
3. A real server (gunicorn with deploy/gunicorn.conf.py, DEBUG off) is started on the
   installation, an ADMIN is logged in (a session cookie) and given an API token, and every
   page and endpoint is fetched once to warm up, then `repeat` times: the median and the
   slowest are printed (milliseconds, measured by the client on 127.0.0.1, so they are
   server time plus well under a millisecond of loopback).
4. The aggregates the dashboard and /metrics read (runs_app.period_stats) are timed in-process.

With --dir the installation (SQLite file, data dir) is kept there, and a second run with the
same --runs reuses the generated history (step 1 is then skipped). With DATABASE_URL the
runs are written into that database: it must be empty or hold exactly this benchmark's runs.
Not a test: the numbers depend on the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Bench, table  # noqa: E402

ENGINE_ID = "bench-engine:1:0.live"
LOG_LINES = 2000
ENGINE_REPEAT = 101  # each takes milliseconds: many samples keep the median steady under load


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) in ms of `repeat` calls after one warm-up call."""
    action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


# --- the engine's queries ---------------------------------------------------------------------


def engine_queries() -> dict[str, Callable[[], object]]:
    from django.db import transaction
    from django.utils import timezone

    from runs_app.engine.loop import Engine
    from runs_app.models import PipelineRun, RunStatus
    from runs_app.period_stats import queue_depth
    from runs_app.services import run_claim_next

    def claim() -> None:
        with transaction.atomic():
            if run_claim_next(engine_id=ENGINE_ID) is None:
                raise SystemExit("the claim found no due run: the queue was not generated")
            transaction.set_rollback(True)

    def orphaned() -> None:  # reconcile: RUNNING runs whose engine is not alive
        list(
            PipelineRun.objects.filter(status=RunStatus.RUNNING).exclude(engine_id__in=[ENGINE_ID])
        )

    def due_runs() -> None:  # the claim's one query over PENDING runs, alone
        list(PipelineRun.objects.due(timezone.now()).order_by("queued_at", "id")[:5])

    return {
        "claim the next run (rolled back)": claim,
        "  its query for the next due runs": due_runs,
        "any run due? (the 50 ms poll)": Engine._runs_due,
        "queue depth (pending / delayed / running)": queue_depth,
        "reconcile: RUNNING runs of dead engines": orphaned,
    }


def time_engine(repeat: int) -> dict[str, float]:
    return {name: timed(action, repeat)[0] for name, action in engine_queries().items()}


# --- data ------------------------------------------------------------------------------------


def make_pipelines(bench: Bench, count: int) -> list[str]:
    from pipelines_app.services import pipelines_sync
    from runs_app.models import ScheduledJob, TriggerType

    names = [f"pipeline-{i:02d}" for i in range(count)]
    for name in names:
        folder = bench.pipelines / name
        folder.mkdir(exist_ok=True)
        (folder / "main.py").write_text("print('hello')\n")
    pipelines_sync()
    for name in names[:10]:
        ScheduledJob.objects.get_or_create(
            pipeline_id=name, trigger_type=TriggerType.CRON, trigger_value="*/5 * * * *"
        )
    return names


def write_files(run, *, log: bool = True) -> None:
    """A log and metrics file for `run` where the engine would put them."""
    from runs_app.logs import run_log_file, run_metrics_file
    from runs_app.models import PipelineRun

    log_path, metrics_path = run_log_file(run), run_metrics_file(run)
    for path in (log_path, metrics_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    if log:
        log_path.write_text(
            "".join(
                f"2026-01-01T00:00:{i % 60:02d}.000000Z line {i} of the run\n"
                for i in range(LOG_LINES)
            )
        )
    metrics_path.write_text(
        "".join(
            f'{{"ts": "2026-01-01T00:00:{i % 60:02d}Z", "cpu_percent": {i % 100}.0, '
            f'"memory_bytes": {20_000_000 + i * 1000}}}\n'
            for i in range(120)
        )
    )
    PipelineRun.objects.filter(id=run.id).update(
        log_file=str(log_path), metrics_file=str(metrics_path)
    )


def generate(args: argparse.Namespace, bench: Bench) -> dict[str, dict[str, float]]:
    from django.utils import timezone

    from bench.history_data import Plan, insert_runs, refresh_aggregates, settle
    from runs_app.models import PipelineRun

    existing = PipelineRun.objects.count()
    names = make_pipelines(bench, args.pipelines)
    if existing == args.runs:
        print(f"reusing the {existing} runs already there", flush=True)
        return {}
    if existing:
        raise SystemExit(
            f"the database holds {existing} runs, not {args.runs}: use an empty database "
            "(or --dir with a fresh directory)"
        )
    plan = Plan(
        runs=args.runs, pending=args.pending, running=20, days=args.days, now=timezone.now()
    )
    engine = {}
    started = time.monotonic()
    insert_runs(plan, *plan.queue, pipelines=len(names))
    settle()
    engine["queue only"] = time_engine(ENGINE_REPEAT)
    insert_runs(plan, *plan.history, pipelines=len(names))
    refresh_aggregates()
    settle()
    print(
        f"generated {args.runs} runs in {time.monotonic() - started:.0f} s "
        f"({PipelineRun.objects.count()} in the table)",
        flush=True,
    )
    engine["among the history"] = time_engine(ENGINE_REPEAT)
    return engine


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(bench: Bench, port: int) -> subprocess.Popen:
    import requests

    env = {**bench.env, "DEBUG": "false"}
    subprocess.run(  # DEBUG off serves hashed static files (whitenoise), as in production
        [sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput"],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    log = (bench.data / "gunicorn.out").open("ab")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(ROOT / "deploy" / "gunicorn.conf.py"),  # what production runs (gthread)
            "fastflow_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"gunicorn did not start; see {log.name}")
        time.sleep(0.2)


def login() -> tuple[dict[str, str], dict[str, str]]:
    """Cookies of a logged-in ADMIN session, and headers with an ADMIN API token."""
    from django.conf import settings
    from django.test import Client

    from accounts_app.models import Role, User
    from accounts_app.services import token_issue

    user, _ = User.objects.get_or_create(username="bench-admin", defaults={"role": Role.ADMIN})
    client = Client()
    client.force_login(user)
    _, raw = token_issue(user=user, name="bench")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {settings.SESSION_COOKIE_NAME: cookie}, {"Authorization": f"Bearer {raw}"}


def cursor_at(position: str) -> str:
    """A cursor of the run list starting below `position` (DRF's format: base64 of
    p=<position>), as a client reaches it by following `next` all the way."""
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


def pages(names: list[str]) -> list[tuple[str, str, str]]:
    """(label, path, "admin" | "api" | "none") of everything timed."""
    from runs_app.admin_runs import PipelineRunAdmin
    from runs_app.models import PipelineRun, RunStatus

    run = (
        PipelineRun.objects.filter(status=RunStatus.FAILED)
        .order_by("queued_at")[PipelineRun.objects.count() // 2 :]
        .first()
        or PipelineRun.objects.filter(status=RunStatus.FAILED).first()
    )
    write_files(run)
    gone = PipelineRun.objects.filter(status=RunStatus.SUCCESS).exclude(id=run.id).first()
    write_files(gone, log=False)
    oldest = list(
        PipelineRun.objects.order_by("queued_at").values_list("queued_at", flat=True)[:51]
    )
    day = run.queued_at
    columns = ["action_checkbox", *PipelineRunAdmin.list_display]
    sorts = {
        "run id": "short_id",
        "pipeline": "pipeline_link",
        "status": "status_column",
        "trigger": "triggered_by",
        "queued": "queued_at",
        "started": "started_at",
        "finished": "finished_at",
        "duration": "duration_column",
    }
    runs = "/admin/runs_app/pipelinerun/"
    admin = [
        ("admin index", "/admin/"),
        ("run list, default", runs),
        ("run list, page 2", f"{runs}?p=2"),
        ("run list, last page (200)", f"{runs}?p=200"),
        ("run list, ?p=500 (past the end)", f"{runs}?p=500"),
    ]
    for label, column in sorts.items():
        index = columns.index(column)
        admin.append((f"sorted by {label}, ascending", f"{runs}?o={index}"))
        admin.append((f"sorted by {label}, descending", f"{runs}?o=-{index}"))
    for status in RunStatus.values:
        admin.append((f"filter status={status}", f"{runs}?status__exact={status}"))
    for trigger in ("webhook", "manual", "daemon_restart"):
        admin.append((f"filter triggered_by={trigger}", f"{runs}?triggered_by={trigger}"))
    admin += [
        ("filter pipeline", f"{runs}?pipeline__pipeline_name__exact={names[7]}"),
        ("date drill-down, year", f"{runs}?queued_at__year={day.year}"),
        (
            "date drill-down, month",
            f"{runs}?queued_at__year={day.year}&queued_at__month={day.month}",
        ),
        (
            "date drill-down, day",
            f"{runs}?queued_at__year={day.year}&queued_at__month={day.month}"
            f"&queued_at__day={day.day}",
        ),
        ("search by run id prefix", f"{runs}?q={str(run.id)[:8]}"),
        ("search by full run id", f"{runs}?q={run.id}"),
        ("search by pipeline name", f"{runs}?q={names[3]}"),
        ("search, no match (hex)", f"{runs}?q=0123abcd9"),
        ("search, no match (text)", f"{runs}?q=no+such+thing"),
        (
            "filter FAILED, sorted by duration",
            f"{runs}?status__exact=FAILED&o=-{columns.index('duration_column')}",
        ),
        (
            "filter SUCCESS, sorted by duration",
            f"{runs}?status__exact=SUCCESS&o=-{columns.index('duration_column')}",
        ),
        (
            "a month, sorted by duration",
            f"{runs}?queued_at__year={day.year}&queued_at__month={day.month}"
            f"&o=-{columns.index('duration_column')}",
        ),
        (
            "filter pipeline, sorted by started",
            f"{runs}?pipeline__pipeline_name__exact={names[7]}&o=-{columns.index('started_at')}",
        ),
        ("run page (log, metrics)", f"{runs}{run.id}/change/"),
        ("run page, log file missing", f"{runs}{gone.id}/change/"),
        ("run log (live tail JSON)", f"{runs}{run.id}/log/?offset=0"),
        ("pipeline list", "/admin/pipelines_app/pipeline/"),
        ("pipeline page", f"/admin/pipelines_app/pipeline/{names[7]}/change/"),
        ("schedule list", "/admin/runs_app/scheduledjob/"),
        ("engine list", "/admin/runs_app/engineinstance/"),
    ]
    since = (run.queued_at - timedelta(days=7)).isoformat()
    api = [
        ("API runs, first page", "/api/runs/"),
        ("API runs, oldest page (cursor)", f"/api/runs/?cursor={cursor_at(str(oldest[-1]))}"),
        ("API runs ?pipeline=", f"/api/runs/?pipeline={names[7]}"),
        ("API runs ?status=FAILED", "/api/runs/?status=FAILED"),
        ("API runs ?status=PENDING", "/api/runs/?status=PENDING"),
        ("API runs ?triggered_by=webhook", "/api/runs/?triggered_by=webhook"),
        ("API runs ?since=7 days", f"/api/runs/?{urlencode({'since': since})}"),
        ("API run detail", f"/api/runs/{run.id}/"),
        ("API run logs", f"/api/runs/{run.id}/logs/"),
        ("API run metrics", f"/api/runs/{run.id}/metrics/"),
        ("API pipelines", "/api/pipelines/"),
        ("API pipeline detail", f"/api/pipelines/{names[7]}/"),
        ("API schedules", "/api/schedules/"),
    ]
    probes = [("/healthz", "/healthz"), ("/readyz", "/readyz")]
    return (
        [(label, path, "admin") for label, path in admin]
        + [(label, path, "api") for label, path in api]
        + [(label, path, "none") for label, path in probes]
    )


def time_pages(port: int, repeat: int, names: list[str]) -> list[list[object]]:
    import requests

    cookies, headers = login()
    rows = []
    for label, path, auth in pages(names):
        url = f"http://127.0.0.1:{port}{path}"
        kwargs = {"admin": {"cookies": cookies}, "api": {"headers": headers}}.get(auth, {})
        codes = set()

        def fetch(url: str = url, kwargs: dict = kwargs, codes: set = codes) -> None:
            response = requests.get(url, timeout=120, allow_redirects=False, **kwargs)
            codes.add(response.status_code)

        median, slowest = timed(fetch, repeat)
        if codes != {200}:
            raise SystemExit(f"{label}: {url} answered {sorted(codes)}")
        rows.append([label, median, slowest])
        print(f"  {label:45s} {median:8.1f} ms", flush=True)
    return rows


def time_aggregates(repeat: int) -> list[list[object]]:
    from django.utils import timezone

    from runs_app.period_stats import (
        failing_pipelines,
        period_summary,
        queue_depth,
        runs_per_period,
    )

    now = timezone.now()
    calls = {
        "summary (rate, p50, p95), 24 h": lambda: period_summary(since=now - timedelta(days=1)),
        "summary, 7 days": lambda: period_summary(since=now - timedelta(days=7)),
        "summary, 30 days": lambda: period_summary(since=now - timedelta(days=30)),
        "runs per hour by status, 24 h": lambda: runs_per_period(since=now - timedelta(days=1)),
        "runs per day by status, 30 days": lambda: runs_per_period(
            since=now - timedelta(days=30), period="day"
        ),
        "failing pipelines, 24 h": lambda: failing_pipelines(since=now - timedelta(days=1)),
        "queue depth": queue_depth,
    }
    return [[label, *timed(call, repeat)] for label, call in calls.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--pending", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="keep (and reuse) the installation here")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()

    bench = Bench(
        executor="local",
        root=args.dir.resolve() if args.dir else None,
        FASTFLOW_MAX_CONCURRENT_RUNS="100",  # the generated RUNNING runs must leave room
    )
    server = heartbeat = None
    try:
        bench.prepare()
        from django.db import connection

        from runs_app.engine.housekeeping import Periodic
        from runs_app.engine.identity import engine_heartbeat

        load_before = os.getloadavg()
        engine = generate(args, bench)
        names = [f"pipeline-{i:02d}" for i in range(args.pipelines)]
        # A live engine row, so /readyz is ready and the engine list has a row to show.
        heartbeat = Periodic(
            "heartbeat", 1.0, lambda: engine_heartbeat(engine_id=ENGINE_ID, executor="local")
        )
        heartbeat.start()
        port = free_port()
        server = start_server(bench, port)
        print(f"timing pages on {connection.vendor} (median of {args.repeat}) …", flush=True)
        page_rows = time_pages(port, args.repeat, names)
        aggregate_rows = time_aggregates(args.repeat)
        load_after = os.getloadavg()
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        if heartbeat is not None:
            heartbeat.stop()
        bench.close()

    render = markdown if args.markdown else table
    title = f"{args.runs:,} runs, {connection.vendor}"
    print(f"\n{title}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    if engine:
        names_ = list(engine["queue only"])
        print(
            render(
                [f"engine query (ms, median of {ENGINE_REPEAT})", *engine],
                [[n, *(engine[phase][n] for phase in engine)] for n in names_],
            )
        )
        print()
    print(render(["page or endpoint", "median ms", "max ms"], page_rows))
    print()
    print(render(["aggregate (in process)", "median ms", "max ms"], aggregate_rows))


def markdown(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
