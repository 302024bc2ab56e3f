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
    )
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    log_file = models.CharField(max_length=1024, blank=True, default="")
    metrics_file = models.CharField(max_length=1024, blank=True, default="")
    env_vars = models.JSONField(default=dict, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    uv_version = models.CharField(max_length=64, blank=True, default="")
    setup_duration = models.FloatField(null=True, blank=True)
    triggered_by = models.CharField(max_length=64, default="manual")
    # Additions (docs/schema.md says why).
    queued_at = models.DateTimeField(default=timezone.now, db_index=True)
    not_before = models.DateTimeField(null=True, blank=True)
    run_config_id = models.CharField(max_length=255, blank=True, default="")
    scheduled_job = models.ForeignKey(
        "runs_app.ScheduledJob",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
    )
    parent_run = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="child_runs"
    )
    retry_attempt = models.IntegerField(default=0)
    chain_depth = models.IntegerField(default=0)
    error_message = models.TextField(blank=True, default="")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    engine_id = models.CharField(max_length=128, blank=True, default="")
    container_id = models.CharField(max_length=128, blank=True, default="")
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True, default="", db_index=True)
    # The label the run wrote to $FASTFLOW_ROUTE_FILE; route triggers (`on_route`) match it.
    route = models.CharField(max_length=128, blank=True, default="")
    # Daemon pipelines: crash restarts in a row (each after a run that crashed quickly) that led
    # to this run; its size sets the crash-loop back-off (runs_app/daemon.py).
    restart_count = models.IntegerField(default=0)

    objects = PipelineRunQuerySet.as_manager()

    class Meta:
        db_table = "pipeline_runs"
        ordering = ["-queued_at"]
        indexes = [
            models.Index(fields=["status", "queued_at"], name="run_status_queued_idx"),
            models.Index(fields=["pipeline", "-queued_at"], name="run_pipeline_queued_idx"),
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
    def duration(self) -> float | None:
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
