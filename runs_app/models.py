from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RunStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATUSES = (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED)


class TriggeredBy(models.TextChoices):
    """What started a run (the admin filter and the API show the value itself)."""

    MANUAL = "manual", "manual"
    WEBHOOK = "webhook", "webhook"
    SCHEDULER = "scheduler", "scheduler"
    DOWNSTREAM = "downstream", "downstream"
    RETRY = "retry", "retry"
    DAEMON_RESTART = "daemon_restart", "daemon_restart"


class PipelineRunQuerySet(models.QuerySet):
    def due(self, now: datetime) -> PipelineRunQuerySet:
        """PENDING runs that may start at `now` (no `not_before`, or it has passed)."""
        return self.filter(status=RunStatus.PENDING).filter(
            Q(not_before__isnull=True) | Q(not_before__lte=now)
        )


class PipelineRun(models.Model):
    """One execution attempt of a pipeline. Transitions go through `runs_app.services`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pipeline = models.ForeignKey(
        "pipelines_app.Pipeline",
        on_delete=models.CASCADE,
        db_column="pipeline_name",
        related_name="runs",
        db_index=False,  # led by run_pipeline_queued_idx
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    log_file = models.CharField(max_length=1024, blank=True, default="")
    metrics_file = models.CharField(max_length=1024, blank=True, default="")
    env_vars = models.JSONField(default=dict, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    uv_version = models.CharField(max_length=64, blank=True, default="")
    setup_duration = models.FloatField(null=True, blank=True)
    triggered_by = models.CharField(
        max_length=64, choices=TriggeredBy.choices, default=TriggeredBy.MANUAL
    )
    # Additions (docs/schema.md says why).
    queued_at = models.DateTimeField(default=timezone.now)
    not_before = models.DateTimeField(null=True, blank=True)
    run_config_id = models.CharField(max_length=255, blank=True, default="")
    scheduled_job = models.ForeignKey(
        "runs_app.ScheduledJob",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
        db_index=False,  # run_schedule_idx, partial
    )
    parent_run = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="child_runs",
        db_index=False,  # run_parent_idx, partial
    )
    retry_attempt = models.IntegerField(default=0)
    chain_depth = models.IntegerField(default=0)
    error_message = models.TextField(blank=True, default="")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    engine_id = models.CharField(max_length=128, blank=True, default="")
    container_id = models.CharField(max_length=128, blank=True, default="")
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    duration = models.FloatField(null=True, blank=True)
    # How often the run went back to the queue because its engine died before starting it.
    requeue_count = models.IntegerField(default=0)
    # The resource limits in force for the run, as the executor applied them.
    limits = models.JSONField(default=dict, blank=True)
    # With git sync: the commit whose checkout the run uses, fixed when it is claimed.
    git_commit = models.CharField(max_length=64, blank=True, default="")
    # The label the run wrote to $FASTFLOW_ROUTE_FILE; route triggers (`on_route`) match it.
    route = models.CharField(max_length=128, blank=True, default="")
    # Daemon pipelines: crash restarts in a row (each after a run that crashed quickly) that led
    # to this run; its size sets the crash-loop back-off (runs_app/daemon.py).
    restart_count = models.IntegerField(default=0)

    objects = PipelineRunQuerySet.as_manager()

    class Meta:
        db_table = "pipeline_runs"
        ordering = ["-queued_at"]
        # Every index answers a query named in docs/schema.md, with its EXPLAIN there; the plans
        # are checked on both databases by tests/test_query_plans.py. Lists sort by (column,
        # queued_at, id); the id tie-break is left to the database's incremental sort (groups
        # of equal (column, queued_at) are tiny), which keeps the indexes half as wide (an id
        # is 32 characters on SQLite).
        indexes = [
            models.Index(fields=["queued_at"], name="run_queued_idx"),
            models.Index(fields=["status", "queued_at"], name="run_status_queued_idx"),
            models.Index(fields=["pipeline", "queued_at"], name="run_pipeline_queued_idx"),
            models.Index(fields=["triggered_by", "queued_at"], name="run_trigger_queued_idx"),
            # queued_at second also orders the runs without a value (not started, not
            # finished): thousands of them, which the sort would otherwise read and sort.
            models.Index(fields=["started_at", "queued_at"], name="run_started_idx"),
            models.Index(fields=["finished_at", "queued_at"], name="run_finished_idx"),
            models.Index(fields=["duration", "queued_at"], name="run_duration_idx"),
            # Partial: most runs have no key, no parent and no schedule, so these stay small.
            # queued_at in it makes SQLite choose it over run_pipeline_queued_idx for the
            # lookup's "queued in the last 24 h, oldest first" (which it did with a plain
            # index on the key); the pipeline is checked on the one or two rows found.
            models.Index(
                fields=["idempotency_key", "queued_at"],
                name="run_idempotency_idx",
                condition=~Q(idempotency_key=""),
            ),
            models.Index(
                fields=["parent_run", "queued_at"],
                name="run_parent_idx",
                condition=Q(parent_run__isnull=False),
            ),
            models.Index(
                fields=["scheduled_job"],
                name="run_schedule_idx",
                condition=Q(scheduled_job__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline_id} {self.id} ({self.status})"

    @property
    def pipeline_name(self) -> str:
        return self.pipeline_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def elapsed(self) -> float | None:
        """Seconds from start to finish: the stored `duration`, or live while running."""
        if self.duration is not None:
            return self.duration
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


class TriggerType(models.TextChoices):
    CRON = "CRON"
    INTERVAL = "INTERVAL"


class ScheduleSource(models.TextChoices):
    PIPELINE_JSON = "pipeline_json"
    ADMIN = "admin"
    # A daemon pipeline's `restart_interval` (also from pipeline.json): a tick stops the running
    # instance and starts a new one instead of adding a run.
    DAEMON_RESTART = "daemon_restart"


FILE_DEFINED_SOURCES = (ScheduleSource.PIPELINE_JSON, ScheduleSource.DAEMON_RESTART)


class ScheduledJob(models.Model):
    """A schedule; the engine mirrors enabled rows into APScheduler's job store."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pipeline = models.ForeignKey(
        "pipelines_app.Pipeline",
        on_delete=models.CASCADE,
        db_column="pipeline_name",
        related_name="scheduled_jobs",
    )
    trigger_type = models.CharField(max_length=16, choices=TriggerType.choices)
    trigger_value = models.CharField(max_length=255)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Additions (docs/schema.md says why).
    source = models.CharField(
        max_length=32, choices=ScheduleSource.choices, default=ScheduleSource.ADMIN
    )
    run_config_id = models.CharField(max_length=255, blank=True, default="")
    start_date = models.DateTimeField(null=True, blank=True)
    end_date = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scheduled_jobs"
        ordering = ["pipeline_id", "created_at"]

    def __str__(self) -> str:
        return f"{self.pipeline_id}: {self.trigger_type} {self.trigger_value}"

    @property
    def pipeline_name(self) -> str:
        return self.pipeline_id

    @property
    def is_file_defined(self) -> bool:
        """Written by discovery from pipeline.json (edited there, never in the admin/API)."""
        return self.source in FILE_DEFINED_SOURCES


class EngineInstanceQuerySet(models.QuerySet):
    def with_fresh_heartbeat(self) -> EngineInstanceQuerySet:
        """Engines whose heartbeat is younger than FASTFLOW_HEARTBEAT_STALE_SECONDS."""
        stale = timedelta(seconds=settings.FASTFLOW_HEARTBEAT_STALE_SECONDS)
        return self.filter(heartbeat_at__gte=timezone.now() - stale)


class EngineInstance(models.Model):
    """A running `runscheduler` process and its heartbeat (engine bookkeeping)."""

    id = models.CharField(primary_key=True, max_length=128)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    executor = models.CharField(max_length=16)
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = EngineInstanceQuerySet.as_manager()

    class Meta:
        db_table = "engine_instances"

    def __str__(self) -> str:
        return self.id


class EngineLease(models.Model):
    """A named lease held by one engine until `expires_at` (the scheduler leader lease)."""

    name = models.CharField(primary_key=True, max_length=64)
    holder = models.CharField(max_length=128)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "engine_leases"

    def __str__(self) -> str:
        return f"{self.name} → {self.holder}"


class RunStat(models.Model):
    """Run statistics that /metrics exports: counters and histogram buckets, one row per
    (pipeline, family, final status, bucket), updated in the transaction that finishes a run
    (`runs_app.stats`). Kept apart from `pipeline_runs` so a scrape reads a few hundred rows
    whatever the number of runs, and so deleting old runs never makes a counter go down."""

    id = models.AutoField(primary_key=True)  # a few rows per pipeline: integer is plenty
    pipeline = models.ForeignKey(
        "pipelines_app.Pipeline",
        on_delete=models.CASCADE,
        db_column="pipeline_name",
        related_name="+",
    )
    family = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    # A histogram bucket's upper bound as Prometheus prints it ("0.5", "+Inf"); "" for a counter.
    le = models.CharField(max_length=16, blank=True, default="")
    count = models.BigIntegerField(default=0)
    total = models.FloatField(default=0.0)

    class Meta:
        db_table = "run_stats"
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline", "family", "status", "le"], name="run_stat_series_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.pipeline_id} {self.family} {self.status} {self.le}: {self.count}"


class StatsGranularity(models.TextChoices):
    HOUR = "hour"
    DAY = "day"


# Upper bounds (seconds) of the duration histogram columns of RunPeriodStats; `gt_1d` counts longer
# runs. Runs that never started (no duration) are in `runs` but in no bucket.
DURATION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("le_1s", 1),
    ("le_5s", 5),
    ("le_10s", 10),
    ("le_30s", 30),
    ("le_1m", 60),
    ("le_2m", 120),
    ("le_5m", 300),
    ("le_10m", 600),
    ("le_30m", 1800),
    ("le_1h", 3600),
    ("le_2h", 7200),
    ("le_6h", 21600),
    ("le_1d", 86400),
)
OVERFLOW_BUCKET = "gt_1d"


class RunPeriodStats(models.Model):
    """How many runs of a pipeline ended with a status in one UTC hour (and, in a second row,
    one UTC day), with the sum and a histogram of their durations.

    Maintained when a run ends (`runs_app.period_stats.run_period_stats_record`, F() + 1 in
    the finishing transaction), so the dashboard reads a few rows per pipeline and period
    instead of the run history; deleting old runs (retention) leaves these totals in place.
    """

    id = models.AutoField(primary_key=True)  # integer on both databases
    granularity = models.CharField(max_length=8, choices=StatsGranularity.choices)
    period_start = models.DateTimeField()
    pipeline = models.ForeignKey(
        "pipelines_app.Pipeline",
        on_delete=models.CASCADE,
        db_column="pipeline_name",
        related_name="+",
        db_index=False,  # led by run_period_stats_pipeline_idx
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    runs = models.IntegerField(default=0)
    duration_sum = models.FloatField(default=0.0)
    le_1s = models.IntegerField(default=0)
    le_5s = models.IntegerField(default=0)
    le_10s = models.IntegerField(default=0)
    le_30s = models.IntegerField(default=0)
    le_1m = models.IntegerField(default=0)
    le_2m = models.IntegerField(default=0)
    le_5m = models.IntegerField(default=0)
    le_10m = models.IntegerField(default=0)
    le_30m = models.IntegerField(default=0)
    le_1h = models.IntegerField(default=0)
    le_2h = models.IntegerField(default=0)
    le_6h = models.IntegerField(default=0)
    le_1d = models.IntegerField(default=0)
    gt_1d = models.IntegerField(default=0)

    class Meta:
        db_table = "run_period_stats"
        ordering = ["granularity", "period_start", "pipeline_id", "status"]
        constraints = [
            # Also the index of every window query (one granularity, period_start >= since).
            models.UniqueConstraint(
                fields=["granularity", "period_start", "pipeline", "status"],
                name="run_period_stats_key",
            )
        ]
        indexes = [
            models.Index(
                fields=["pipeline", "granularity", "period_start"],
                name="run_period_stats_pipeline_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.pipeline_id} {self.status} {self.granularity} of {self.period_start}"
