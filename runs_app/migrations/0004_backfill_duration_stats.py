"""Fill `pipeline_runs.duration` for finished runs and `run_period_stats` from the run history.

Not atomic: the duration is written in batches of BATCH runs (walking the primary key), each
in its own transaction, so a large SQLite database is not locked for one long write and a
PostgreSQL upgrade does not hold row locks on the whole table. Re-running it is harmless:
only rows without a duration are touched, and the rollup is filled only while it is empty.
"""

from django.db import migrations, transaction
from django.db.models import Case, Count, Q, Sum, Value, When
from django.db.models.functions import TruncDay, TruncHour

BATCH = 20_000
# A frozen copy of runs_app.models.DURATION_BUCKETS when this migration was written.
DURATION_BUCKETS = (
    ("le_1s", 1), ("le_5s", 5), ("le_10s", 10), ("le_30s", 30), ("le_1m", 60), ("le_2m", 120),
    ("le_5m", 300), ("le_10m", 600), ("le_30m", 1800), ("le_1h", 3600), ("le_2h", 7200),
    ("le_6h", 21600), ("le_1d", 86400),
)
OVERFLOW_BUCKET = "gt_1d"
TERMINAL = ("SUCCESS", "FAILED", "CANCELLED")

SECONDS = {
    "sqlite": "(julianday(finished_at) - julianday(started_at)) * 86400.0",
    "postgresql": "EXTRACT(EPOCH FROM (finished_at - started_at))",
}


def backfill_duration(apps, schema_editor):
    connection = schema_editor.connection
    seconds = SECONDS[connection.vendor]
    table = schema_editor.quote_name("pipeline_runs")
    last = None
    while True:
        with connection.cursor() as cursor:
            where, params = ("WHERE id > %s", [last]) if last is not None else ("", [])
            cursor.execute(
                f"SELECT id FROM {table} {where} ORDER BY id LIMIT 1 OFFSET %s",
                [*params, BATCH - 1],
            )
            row = cursor.fetchone()
        upper = row[0] if row else None
        bounds, params = [], []
        if last is not None:
            bounds.append("id > %s")
            params.append(last)
        if upper is not None:
            bounds.append("id <= %s")
            params.append(upper)
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET duration = {seconds} "
                "WHERE duration IS NULL AND started_at IS NOT NULL AND finished_at IS NOT NULL"
                + "".join(f" AND {bound}" for bound in bounds),
                params,
            )
        if upper is None:
            return
        last = upper


def backfill_stats(apps, schema_editor):
    PipelineRun = apps.get_model("runs_app", "PipelineRun")
    RunPeriodStats = apps.get_model("runs_app", "RunPeriodStats")
    alias = schema_editor.connection.alias
    if RunPeriodStats.objects.using(alias).exists():
        return
    histogram, low = {}, None
    for column, high in DURATION_BUCKETS:
        within = Q(duration__lte=high) if low is None else Q(duration__gt=low, duration__lte=high)
        histogram[column] = Sum(Case(When(within, then=Value(1)), default=Value(0)))
        low = high
    histogram[OVERFLOW_BUCKET] = Sum(Case(When(duration__gt=low, then=Value(1)), default=Value(0)))
    finished = PipelineRun.objects.using(alias).filter(
        status__in=TERMINAL, finished_at__isnull=False
    )
    for granularity, trunc in (("hour", TruncHour), ("day", TruncDay)):
        groups = (
            finished.annotate(start=trunc("finished_at"))
            .values("start", "pipeline_id", "status")
            .annotate(runs=Count("id"), seconds=Sum("duration"), **histogram)
            .order_by()
        )
        rows = [
            RunPeriodStats(
                granularity=granularity,
                period_start=group["start"],
                pipeline_id=group["pipeline_id"],
                status=group["status"],
                runs=group["runs"],
                duration_sum=group["seconds"] or 0.0,
                **{column: group[column] or 0 for column in histogram},
            )
            for group in groups.iterator(chunk_size=BATCH)
        ]
        with transaction.atomic(using=alias):
            RunPeriodStats.objects.using(alias).bulk_create(rows, batch_size=1000)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("runs_app", "0003_run_indexes_duration_stats"),
    ]

    operations = [
        migrations.RunPython(backfill_duration, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(backfill_stats, migrations.RunPython.noop, elidable=True),
    ]
