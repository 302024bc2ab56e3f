"""Bulk generation of run history for bench/history.py: one INSERT … SELECT per batch of rows
(a recursive CTE on SQLite, generate_series on PostgreSQL), so a million runs take minutes,
not the hours a million ORM saves would.

Runs are spread evenly over `days` up to now, round-robin over the pipelines with random
statuses (86 % SUCCESS, 10 % FAILED, 4 % CANCELLED, a third of those before they started),
triggers (60 % scheduler, 15 % manual, 10 % webhook, 7 % downstream, 8 % retry) and durations
(70 % 1–60 s, 25 % 1–10 min, 5 % 10–60 min). The newest `pending` runs are PENDING (5 % of
them delayed retries), the `running` before them RUNNING.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

COLUMNS = (
    "id, pipeline_name, status, started_at, finished_at, duration, exit_code, log_file, "
    "metrics_file, env_vars, parameters, uv_version, setup_duration, triggered_by, queued_at, "
    "not_before, run_config_id, retry_attempt, chain_depth, error_message, cancel_requested_at, "
    "engine_id, container_id, peak_memory_bytes, idempotency_key, requeue_count, limits, "
    "git_commit, route, restart_count"
)
ENV_VARS = (
    '{"FASTFLOW_RUN_ID": "generated", "PYTHONUNBUFFERED": "1", "API_TOKEN": "***", '
    '"REGION": "eu-central-1", "BATCH_SIZE": "500"}'
)
# The limits the engine records when a run starts (the installation's defaults).
LIMITS = (
    '{"memory_bytes": 2147483648, "cpus": 1.0, "pids": 512, "tmp_bytes": 268435456, '
    '"timeout_seconds": null, "log_max_bytes": 52428800}'
)
BATCH = 100_000


@dataclass(frozen=True)
class Plan:
    runs: int
    pending: int
    running: int
    days: int
    now: datetime

    @property
    def step_us(self) -> int:
        return int(timedelta(days=self.days).total_seconds() * 1_000_000) // self.runs

    @property
    def base(self) -> datetime:
        return self.now - timedelta(microseconds=self.step_us * self.runs)

    @property
    def history(self) -> tuple[int, int]:
        return 1, self.runs - self.pending - self.running

    @property
    def queue(self) -> tuple[int, int]:
        return self.runs - self.pending - self.running + 1, self.runs


# Per-row random numbers: s (status), t (trigger), d (duration class), u (0..999999, detail).
# `kind` is 'history', 'running' or 'pending', chosen by the row number.
_DERIVED = """
    CASE WHEN n > :queue_first + :running - 1 THEN 'PENDING'
         WHEN n >= :queue_first THEN 'RUNNING'
         WHEN s < 860 THEN 'SUCCESS' WHEN s < 960 THEN 'FAILED' ELSE 'CANCELLED' END AS status,
    CASE WHEN t < 600 THEN 'scheduler' WHEN t < 750 THEN 'manual' WHEN t < 850 THEN 'webhook'
         WHEN t < 920 THEN 'downstream' ELSE 'retry' END AS trig,
    q_us + 20000 + u % 2000000 AS start_us,
    CASE WHEN d < 700 THEN 1000000 + u * 59 WHEN d < 950 THEN 60000000 + u * 540
         ELSE 600000000 + u * 3000 END AS dur_us
"""


def _select_list(ts, *, pct: str, env_vars: str, json: str, a_day_later: str) -> str:
    """The generated columns, in COLUMNS' order, for one database's dialect: `ts` turns
    microseconds since the base into a timestamp, `pct` is the modulo operator as the driver
    needs it written, `env_vars` the parameter, `json` a cast to the JSON type."""
    never_started = f"(x.status = 'CANCELLED' AND x.u {pct} 3 = 0)"
    return f"""x.id, p.name, x.status,
        CASE WHEN x.status = 'PENDING' OR {never_started} THEN NULL
             ELSE {ts("x.start_us")} END,
        CASE WHEN x.status IN ('PENDING', 'RUNNING') THEN NULL
             WHEN {never_started} THEN {ts("x.q_us + 60000000")}
             ELSE {ts("x.start_us + x.dur_us")} END,
        CASE WHEN x.status IN ('PENDING', 'RUNNING') OR {never_started} THEN NULL
             ELSE x.dur_us / 1000000.0 END,
        CASE x.status WHEN 'SUCCESS' THEN 0 WHEN 'FAILED' THEN 1 + x.u {pct} 3 END,
        '', '', {env_vars}{json},
        CASE WHEN x.u {pct} 4 = 0 THEN '{{"DAY": "monday"}}' ELSE '{{}}' END{json},
        '0.5.11', 0.05 + (x.u {pct} 2000) / 1000.0, x.trig, {ts("x.q_us")},
        CASE WHEN x.status = 'PENDING' AND x.u {pct} 20 = 0 THEN {a_day_later} END,
        '', CASE x.trig WHEN 'retry' THEN 1 ELSE 0 END,
        CASE x.trig WHEN 'downstream' THEN 1 ELSE 0 END,
        CASE x.status WHEN 'FAILED' THEN 'exited with code ' || (1 + x.u {pct} 3)
                      WHEN 'CANCELLED' THEN 'cancelled by request' ELSE '' END,
        CASE x.status WHEN 'CANCELLED' THEN {ts("x.start_us")} END,
        CASE WHEN x.status = 'PENDING' THEN '' ELSE 'bench-engine:1:0.gone' END,
        CASE WHEN x.status = 'PENDING' THEN '' ELSE 'c' || x.n END,
        CASE WHEN x.status = 'PENDING' THEN NULL ELSE 20000000 + x.u * 100 END,
        CASE x.trig WHEN 'scheduler' THEN 'schedule:' || p.name || ':' || x.q_us
                    WHEN 'retry' THEN 'retry:' || x.n WHEN 'downstream' THEN 'downstream:' || x.n
                    WHEN 'webhook' THEN CASE WHEN x.u {pct} 2 = 0 THEN 'webhook:' || x.n ELSE '' END
                    ELSE '' END,
        0,
        CASE WHEN x.status = 'PENDING' OR {never_started} THEN '{{}}'
             ELSE '{LIMITS}' END{json},
        '', '', 0"""


def _sqlite_sql() -> str:
    def ts(us: str) -> str:
        return (
            f"strftime('%Y-%m-%d %H:%M:%S', :base, '+' || (({us}) / 1000000) || ' seconds')"
            f" || printf('.%06d', ({us}) % 1000000)"
        )

    columns = _select_list(
        ts,
        pct="%",
        env_vars=":env_vars",
        json="",
        a_day_later="strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day')",
    )
    return f"""
    INSERT INTO pipeline_runs ({COLUMNS})
    WITH RECURSIVE seq(n) AS (SELECT :first UNION ALL SELECT n + 1 FROM seq WHERE n < :last),
    pipes(i, name) AS MATERIALIZED (
        SELECT row_number() OVER (ORDER BY pipeline_name) - 1, pipeline_name FROM pipelines),
    r AS MATERIALIZED (
        SELECT n, lower(hex(randomblob(16))) AS id, abs(random()) % 1000 AS s,
               abs(random()) % 1000 AS t, abs(random()) % 1000 AS d,
               abs(random()) % 1000000 AS u, (n - 1) * :step AS q_us
        FROM seq),
    x AS MATERIALIZED (SELECT r.*, {_DERIVED} FROM r)
    SELECT {columns}
    FROM x JOIN pipes p ON p.i = x.n % :pipelines
    """


def _postgres_sql() -> str:
    def ts(us: str) -> str:
        return f"(%(base)s::timestamptz + ({us}) * interval '1 microsecond')"

    derived = (
        _DERIVED.replace("%", "%%")
        .replace(":queue_first", "%(queue_first)s")
        .replace(":running", "%(running)s")
    )
    columns = _select_list(
        ts,
        pct="%%",
        env_vars="%(env_vars)s",
        json="::jsonb",
        a_day_later="now() + interval '1 day'",
    )
    return f"""
    WITH pipes AS (
        SELECT row_number() OVER (ORDER BY pipeline_name) - 1 AS i, pipeline_name AS name
        FROM pipelines),
    r AS (
        SELECT n, gen_random_uuid() AS id, floor(random() * 1000)::int AS s,
               floor(random() * 1000)::int AS t, floor(random() * 1000)::int AS d,
               floor(random() * 1000000)::bigint AS u, (n - 1) * %(step)s::bigint AS q_us
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
        OFFSET 0),
    x AS (SELECT r.*, {derived} FROM r)
    INSERT INTO pipeline_runs ({COLUMNS})
    SELECT {columns}
    FROM x JOIN pipes p ON p.i = x.n %% %(pipelines)s
    """


def insert_runs(plan: Plan, first: int, last: int, *, pipelines: int) -> None:
    """Rows number `first`..`last` of the plan, in batches of BATCH, one transaction each."""
    queue_first = plan.queue[0]
    for start in range(first, last + 1, BATCH):
        params = {
            "first": start,
            "last": min(start + BATCH - 1, last),
            "step": plan.step_us,
            "base": plan.base.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "queue_first": queue_first,
            "running": plan.running,
            "pipelines": pipelines,
            "env_vars": ENV_VARS,
        }
        with transaction.atomic():
            if connection.vendor == "sqlite":
                # The driver's own named parameters: Django's wrapper would %-format the query.
                connection.connection.execute(_sqlite_sql(), params)
            else:
                with connection.cursor() as cursor:
                    cursor.execute(_postgres_sql(), params)


def refresh_aggregates() -> None:
    """What run_finish maintains run by run, computed once for the generated history: the
    pipeline counters and the hourly and daily statistics (runs_app.period_stats)."""
    from runs_app.models import DURATION_BUCKETS, OVERFLOW_BUCKET

    histogram, low = [], None
    for _, high in DURATION_BUCKETS:
        within = f"duration <= {high}"
        if low is not None:
            within += f" AND duration > {low}"
        histogram.append(f"sum(CASE WHEN {within} THEN 1 ELSE 0 END)")
        low = high
    histogram.append(f"sum(CASE WHEN duration > {low} THEN 1 ELSE 0 END)")
    columns = ", ".join([name for name, _ in DURATION_BUCKETS] + [OVERFLOW_BUCKET])
    starts = (
        {"hour": "substr(finished_at, 1, 13) || ':00:00'", "day": "substr(finished_at, 1, 10)"}
        if connection.vendor == "sqlite"
        else {
            "hour": "date_trunc('hour', finished_at)",
            "day": "date_trunc('day', finished_at)",
        }
    )
    if connection.vendor == "sqlite":
        starts["day"] += " || ' 00:00:00'"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """UPDATE pipelines SET
                total_runs = (SELECT count(*) FROM pipeline_runs r
                    WHERE r.pipeline_name = pipelines.pipeline_name
                    AND r.status IN ('SUCCESS', 'FAILED', 'CANCELLED')),
                successful_runs = (SELECT count(*) FROM pipeline_runs r
                    WHERE r.pipeline_name = pipelines.pipeline_name AND r.status = 'SUCCESS'),
                failed_runs = (SELECT count(*) FROM pipeline_runs r
                    WHERE r.pipeline_name = pipelines.pipeline_name AND r.status = 'FAILED'),
                webhook_runs = (SELECT count(*) FROM pipeline_runs r
                    WHERE r.pipeline_name = pipelines.pipeline_name
                    AND r.triggered_by = 'webhook'
                    AND r.status IN ('SUCCESS', 'FAILED', 'CANCELLED'))"""
        )
        # The scheduler's runs of the pipelines that have a schedule point to it, as real ones
        # do (what run_schedule_idx holds).
        cursor.execute(
            """UPDATE pipeline_runs SET scheduled_job_id = (SELECT j.id FROM scheduled_jobs j
                WHERE j.pipeline_name = pipeline_runs.pipeline_name)
            WHERE triggered_by = 'scheduler' AND pipeline_name IN
                (SELECT pipeline_name FROM scheduled_jobs)"""
        )
        cursor.execute("DELETE FROM run_period_stats")
        for granularity, start in starts.items():
            cursor.execute(
                f"""INSERT INTO run_period_stats (granularity, period_start, pipeline_name, status,
                    runs, duration_sum, {columns})
                SELECT '{granularity}', {start}, pipeline_name, status, count(*),
                    coalesce(sum(duration), 0), {", ".join(histogram)}
                FROM pipeline_runs
                WHERE status IN ('SUCCESS', 'FAILED', 'CANCELLED') AND finished_at IS NOT NULL
                GROUP BY 2, 3, 4"""
            )


def settle() -> None:
    """After a bulk load: PostgreSQL's statistics and visibility map (what autovacuum would
    do within minutes), SQLite's WAL folded into the database file. SQLite gets no ANALYZE:
    a default installation never runs one, so the plans measured are the plans users get."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE pipeline_runs")
            cursor.execute("VACUUM ANALYZE run_period_stats")
            cursor.execute("VACUUM ANALYZE pipelines")
        else:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
