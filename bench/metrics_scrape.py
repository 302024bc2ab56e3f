"""/metrics at scale: one scrape against a database holding --runs runs (default 1 000 000).

    .venv/bin/python bench/metrics_scrape.py [--runs 1000000] [--pipelines 50] [--repeat 20]
    DATABASE_URL=postgres://…/fastflow_bench .venv/bin/python bench/metrics_scrape.py

Side by side, in one run, median / p95 ms over --repeat scrapes:

- `/metrics`: the whole view (token check, the five collector queries, text exposition),
  called in process through Django's test client (no HTTP);
- raw: the same five SQL statements with a bare cursor, nothing else (the floor);
- naive: what a collector aggregating `pipeline_runs` at scrape time would pay for the run
  counters alone (`GROUP BY pipeline, status` over every run) — the design this avoids.

Runs are bulk-inserted with SQL (PENDING/RUNNING a few hundred, the rest finished); `run_stats`
is filled by the real `run_stats_record()` for a sample of them. On PostgreSQL the plan of the
queue query is printed (it must use an index on `status`).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Bench, summary, table  # noqa: E402

TOKEN = "bench-metrics-token-0123456789"  # noqa: S105 - a throwaway installation


def insert_runs(connection, *, runs: int, pipelines: int) -> None:
    """`runs` rows over `pipelines` pipelines: 200 PENDING, 10 RUNNING, the rest finished."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                """
                INSERT INTO pipeline_runs (id, pipeline_name, status, started_at, finished_at,
                    log_file, metrics_file, env_vars, parameters, uv_version, triggered_by,
                    queued_at, run_config_id, retry_attempt, chain_depth, error_message,
                    engine_id, container_id, idempotency_key, requeue_count, limits, git_commit,
                    route, restart_count)
                SELECT gen_random_uuid(), 'p' || (n %% %s),
                    CASE WHEN n < 200 THEN 'PENDING' WHEN n < 210 THEN 'RUNNING'
                         WHEN n %% 10 = 0 THEN 'FAILED' WHEN n %% 97 = 0 THEN 'CANCELLED'
                         ELSE 'SUCCESS' END,
                    now() - (n || ' seconds')::interval,
                    CASE WHEN n < 210 THEN NULL
                         ELSE now() - (n || ' seconds')::interval + interval '30 seconds' END,
                    '', '', '{}', '{}', '', 'manual', now() - (n || ' seconds')::interval,
                    '', 0, 0, '', '', '', '', 0, '{}', '', '', 0
                FROM generate_series(0, %s - 1) AS n
                """,
                [pipelines, runs],
            )
        else:
            cursor.execute(
                """
                WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < %s - 1)
                INSERT INTO pipeline_runs (id, pipeline_name, status, started_at, finished_at,
                    log_file, metrics_file, env_vars, parameters, uv_version, triggered_by,
                    queued_at, run_config_id, retry_attempt, chain_depth, error_message,
                    engine_id, container_id, idempotency_key, requeue_count, limits, git_commit,
                    route, restart_count)
                SELECT lower(hex(randomblob(16))), 'p' || (n %% %s),
                    CASE WHEN n < 200 THEN 'PENDING' WHEN n < 210 THEN 'RUNNING'
                         WHEN n %% 10 = 0 THEN 'FAILED' WHEN n %% 97 = 0 THEN 'CANCELLED'
                         ELSE 'SUCCESS' END,
                    datetime('now', '-' || n || ' seconds'),
                    CASE WHEN n < 210 THEN NULL
                         ELSE datetime('now', '-' || n || ' seconds', '+30 seconds') END,
                    '', '', '{}', '{}', '', 'manual', datetime('now', '-' || n || ' seconds'),
                    '', 0, 0, '', '', '', '', 0, '{}', '', '', 0
                FROM seq
                """,
                [runs, pipelines],
            )
        cursor.execute("ANALYZE")


def fill_run_stats(sample: int) -> None:
    from django.db import transaction

    from runs_app.models import PipelineRun, RunStatus
    from runs_app.stats import run_stats_record

    finished = PipelineRun.objects.exclude(status__in=[RunStatus.PENDING, RunStatus.RUNNING])
    with transaction.atomic():
        for index, run in enumerate(finished.order_by()[:sample]):
            # Spread over the buckets: durations from a second to hours, setups from 50 ms.
            run.finished_at = run.started_at + timedelta(seconds=(index * 7919) % 20000 + 1)
            run.setup_duration = ((index * 104729) % 6000) / 100 + 0.05
            run_stats_record(run=run)


def collector_sql(connection) -> list[tuple[str, list]]:
    """The statements one scrape runs, captured from a real scrape."""
    from django.db import reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    reset_queries()
    with CaptureQueriesContext(connection) as captured:
        Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return [(q["sql"], []) for q in captured.captured_queries]


def profile_one(connection) -> None:
    """Where one scrape's time goes: each statement's own duration."""
    from django.db import reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    reset_queries()
    with CaptureQueriesContext(connection) as captured:
        Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    for query in captured.captured_queries:
        print(f"  {float(query['time']) * 1000:7.1f} ms  {query['sql'][:90]}")


def timed(action, repeat: int) -> list[float]:
    action()  # warm the caches once
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--stats-sample", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    bench = Bench(executor="local", keep=args.keep, FASTFLOW_METRICS_TOKEN=TOKEN)
    try:
        bench.prepare()
        from django.conf import settings
        from django.db import connection
        from django.test import Client

        from pipelines_app.models import Pipeline
        from runs_app.models import RunStat

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        Pipeline.objects.bulk_create(
            [Pipeline(pipeline_name=f"p{i}", has_requirements=i % 2 == 0) for i in range(50)]
        )
        started = time.perf_counter()
        insert_runs(connection, runs=args.runs, pipelines=args.pipelines)
        fill_run_stats(args.stats_sample)
        print(
            f"{connection.vendor}: {args.runs} runs, {args.pipelines} pipelines, "
            f"{RunStat.objects.count()} run_stats rows (set up in "
            f"{time.perf_counter() - started:.0f} s)"
        )

        client = Client()

        def scrape() -> None:
            response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
            assert response.status_code == 200, response.status_code

        statements = collector_sql(connection)

        def raw() -> None:
            with connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(sql, params)
                    cursor.fetchall()

        def naive() -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pipeline_name, status, COUNT(*) FROM pipeline_runs "
                    "GROUP BY pipeline_name, status"
                )
                cursor.fetchall()

        rows = []
        for name, action, repeat in (
            ("/metrics (whole view)", scrape, args.repeat),
            (f"raw: the same {len(statements)} statements", raw, args.repeat),
            ("naive: GROUP BY over pipeline_runs", naive, max(args.repeat // 4, 3)),
        ):
            median, p95 = summary(timed(action, repeat))
            rows.append([name, f"{median:.1f}", f"{p95:.1f}"])
        print(table(["measure", "median ms", "p95 ms"], rows))
        print("one scrape, per statement:")
        profile_one(connection)
        if connection.vendor == "postgresql":
            queue_sql = next(sql for sql, _ in statements if "pipeline_runs" in sql)
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + queue_sql)
                print("plan of the queue query:")
                print("\n".join("  " + line for (line,) in cursor.fetchall()))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
