"""`GET /metrics`: Prometheus text format (`prometheus-client`).

Everything that lives in the database is read at scrape time by `DatabaseCollector`, so any
number of web workers report the same values and nothing is lost when one restarts: finished
runs come from the small `run_stats` table (`runs_app.stats`), the queue from the PENDING and
RUNNING rows of `pipeline_runs` (the `(status, queued_at)` index), engines from their heartbeat
rows, the cache warm-up state from `pipelines`. One query per family, none of them grows with
the number of finished runs.

The only in-process values are webhook responses; under gunicorn (deploy/gunicorn.conf.py)
prometheus-client's multiprocess mode adds up every worker's counts.

Access: `Authorization: Bearer $FASTFLOW_METRICS_TOKEN`, or any user's API token or login
session (every role, READONLY included, may read metrics).
"""

from __future__ import annotations

import hmac
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from accounts_app.roles import Role, role_at_least
from accounts_app.services import token_authenticate
from fastflow_site.api.errors import error_json
from pipelines_app.models import Pipeline
from runs_app.engine.lease import SCHEDULER_LEASE
from runs_app.models import EngineInstance, EngineLease, PipelineRun, RunStat, RunStatus
from runs_app.stats import HISTOGRAMS, RUNS

WEBHOOK_RESPONSES = Counter(
    "fastflow_webhook_responses",
    "Responses of the webhook endpoint, by HTTP status code.",
    ["code"],
    registry=None,
)

# family → (metric name, help, labelled by final status too). Setup time and schedule lag do
# not depend on how the run ended: summed over statuses, a third of the series.
HISTOGRAM_NAMES = {
    "run_duration": (
        "fastflow_run_duration_seconds",
        "Run duration from start to finish, by pipeline and final status.",
        True,
    ),
    "setup_duration": (
        "fastflow_run_setup_duration_seconds",
        "Environment setup time of a run (uv install) until user code started.",
        False,
    ),
    "schedule_lag": (
        "fastflow_schedule_lag_seconds",
        "Delay between a schedule's fire time and the start of the run it queued.",
        False,
    ),
}


def _age(now: datetime, moment: datetime | None) -> float:
    return max((now - moment).total_seconds(), 0.0) if moment is not None else 0.0


class DatabaseCollector(Collector):
    """Reads every database-backed family at scrape time."""

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self.finished_runs()
        yield from self.queue(now)
        yield from self.engines(now)
        yield from self.cache_warmup()

    @staticmethod
    def finished_runs() -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "fastflow_runs",
            "Runs that reached a terminal status, by pipeline and status.",
            labels=["pipeline", "status"],
        )
        # (family, label values) → {le: count}, and the sums of the observations.
        buckets: dict[tuple[str, tuple[str, ...]], dict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        sums: dict[tuple[str, tuple[str, ...]], float] = defaultdict(float)
        rows = RunStat.objects.order_by().values_list(
            "family", "pipeline_id", "status", "le", "count", "total"
        )
        for family, pipeline, status, le, count, total in rows:
            if family == RUNS:
                runs.add_metric([pipeline, status], count)
            elif family in HISTOGRAMS:
                by_status = HISTOGRAM_NAMES[family][2]
                key = (family, (pipeline, status) if by_status else (pipeline,))
                buckets[key][le] += count
                sums[key] += total
        yield runs
        for family, histogram in HISTOGRAMS.items():
            name, documentation, by_status = HISTOGRAM_NAMES[family]
            labels = ["pipeline", "status"] if by_status else ["pipeline"]
            metric = HistogramMetricFamily(name, documentation, labels=labels)
            for key, counts in sorted(buckets.items()):
                if key[0] != family:
                    continue
                cumulative, series = 0, []
                for le in histogram.labels:
                    cumulative += counts.get(le, 0)
                    series.append((le, cumulative))
                metric.add_metric(list(key[1]), series, sum_value=sums[key])
            yield metric

    @staticmethod
    def queue(now: datetime) -> Iterator[Metric]:
        due = Q(status=RunStatus.PENDING) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
        rows = (
            PipelineRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING])
            .order_by()
            # Grouped by status first: SQLite then reads the (status, queued_at) index instead
            # of scanning every run through the (pipeline, queued_at) one.
            .values_list("status", "pipeline_id")
            .annotate(
                n=Count("id"), oldest_due=Min(Coalesce("not_before", "queued_at"), filter=due)
            )
        )
        queued = GaugeMetricFamily(
            "fastflow_runs_queued",
            "PENDING runs (including retries waiting for their delay), by pipeline.",
            labels=["pipeline"],
        )
        running = GaugeMetricFamily(
            "fastflow_runs_running", "RUNNING runs, by pipeline.", labels=["pipeline"]
        )
        oldest = 0.0
        for status, pipeline, n, oldest_due in rows:
            if status == RunStatus.PENDING:
                queued.add_metric([pipeline], n)
                oldest = max(oldest, _age(now, oldest_due))
            else:
                running.add_metric([pipeline], n)
        yield queued
        yield running
        yield GaugeMetricFamily(
            "fastflow_oldest_queued_run_age_seconds",
            "How long the oldest due PENDING run has been waiting (0 when none waits).",
            value=oldest,
        )

    @staticmethod
    def engines(now: datetime) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "fastflow_engine_heartbeat_age_seconds",
            "Seconds since each registered runscheduler's last heartbeat.",
            labels=["engine", "hostname", "executor"],
        )
        stale_after = settings.FASTFLOW_HEARTBEAT_STALE_SECONDS
        alive = 0
        rows = EngineInstance.objects.values_list("id", "hostname", "executor", "heartbeat_at")
        for engine_id, hostname, executor, heartbeat_at in rows:
            seconds = _age(now, heartbeat_at)
            age.add_metric([engine_id, hostname, executor], seconds)
            alive += seconds <= stale_after
        yield age
        yield GaugeMetricFamily(
            "fastflow_engines_alive",
            "Engines whose heartbeat is at most FASTFLOW_HEARTBEAT_STALE_SECONDS old.",
            value=alive,
        )
        leader = GaugeMetricFamily(
            "fastflow_scheduler_leader",
            "1 for the engine holding the scheduler lease (fires schedules).",
            labels=["engine"],
        )
        lease = EngineLease.objects.filter(name=SCHEDULER_LEASE, expires_at__gt=now).first()
        if lease is not None:
            leader.add_metric([lease.holder], 1)
        yield leader

    @staticmethod
    def cache_warmup() -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "fastflow_cache_warmup_state",
            "uv cache warm-up of each pipeline with a requirements.txt: 1 for its current state "
            "(warm, failed or pending).",
            labels=["pipeline", "state"],
        )
        last = GaugeMetricFamily(
            "fastflow_cache_warmup_last_success_timestamp_seconds",
            "When the pipeline's requirements were last installed into the cache (unix time).",
            labels=["pipeline"],
        )
        rows = (
            Pipeline.objects.filter(has_requirements=True, is_missing=False)
            .order_by()
            .values_list("pipeline_name", "last_cache_warmup", "cache_warmup_error")
        )
        for name, warmed_at, error in rows:
            current = "failed" if error else "warm" if warmed_at is not None else "pending"
            for value in ("warm", "failed", "pending"):
                state.add_metric([name, value], 1 if value == current else 0)
            if warmed_at is not None:
                last.add_metric([name], warmed_at.timestamp())
        yield state
        yield last


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    if os.path.isdir(os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(WEBHOOK_RESPONSES)
    return registry


def metrics_access_allowed(request: HttpRequest) -> bool:
    """The metrics token, any valid API token, or a logged-in (unblocked) user."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return False
        expected = settings.FASTFLOW_METRICS_TOKEN
        if expected and hmac.compare_digest(credential.encode(), expected.encode()):
            return True
        # token_authenticate refuses blocked users; every role may read metrics.
        return token_authenticate(token=credential) is not None
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and user.is_authenticated
        and not getattr(user, "blocked", False)
        and role_at_least(getattr(user, "role", ""), Role.READONLY)
    )


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_access_allowed(request):
        response = error_json(
            "not_authenticated",
            "metrics need 'Authorization: Bearer <FASTFLOW_METRICS_TOKEN or an API token>' "
            "or a login session",
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        body = encoder(scrape_registry())
    except DatabaseError as exc:
        return error_json("unavailable", f"database: {exc.__class__.__name__}", status=503)
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def webhook_response_counted(response: HttpResponse) -> HttpResponse:
    WEBHOOK_RESPONSES.labels(code=str(response.status_code)).inc()
    return response
