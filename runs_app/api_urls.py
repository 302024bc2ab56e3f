from __future__ import annotations

from django.urls import path

import fastflow_site.api.converters  # noqa: F401 - registers <name:...>
from runs_app import api, schedule_api

urlpatterns = [
    path(
        "pipelines/<name:name>/runs/",
        api.PipelineRunCreateApi.as_view(),
        name="api-pipeline-runs",
    ),
    path("runs/", api.RunListApi.as_view(), name="api-runs"),
    path("runs/<uuid:run_id>/", api.RunDetailApi.as_view(), name="api-run"),
    path("runs/<uuid:run_id>/cancel/", api.RunCancelApi.as_view(), name="api-run-cancel"),
    path("runs/<uuid:run_id>/retry/", api.RunRetryApi.as_view(), name="api-run-retry"),
    path("runs/<uuid:run_id>/logs/", api.RunLogsApi.as_view(), name="api-run-logs"),
    path(
        "runs/<uuid:run_id>/logs/stream/",
        api.RunLogStreamApi.as_view(),
        name="api-run-logs-stream",
    ),
    path("runs/<uuid:run_id>/metrics/", api.RunMetricsApi.as_view(), name="api-run-metrics"),
    path(
        "runs/<uuid:run_id>/artifacts/<name:name>",
        api.RunArtifactApi.as_view(),
        name="api-run-artifact",
    ),
    path("schedules/", schedule_api.ScheduleListApi.as_view(), name="api-schedules"),
    path(
        "schedules/<uuid:schedule_id>/",
        schedule_api.ScheduleDetailApi.as_view(),
        name="api-schedule",
    ),
]
