from __future__ import annotations

from django.urls import path

import fastflow_site.api.converters  # noqa: F401 - registers <name:...>
from pipelines_app import api

urlpatterns = [
    path("pipelines/", api.PipelineListApi.as_view(), name="api-pipelines"),
    # Before <name>/: a pipeline folder called "sync" is reachable for runs, not GET/PATCH.
    path("pipelines/sync/", api.PipelineSyncApi.as_view(), name="api-pipelines-sync"),
    path("pipelines/<name:name>/", api.PipelineDetailApi.as_view(), name="api-pipeline"),
    # pipelines/<name>/runs/ (start a run) is routed by runs_app/api_urls.py.
]
