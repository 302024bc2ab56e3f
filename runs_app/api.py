"""Runs over the API: start (POST /api/pipelines/<name>/runs/), list, detail, cancel, retry,
log tailing, log streaming, metrics."""

from __future__ import annotations

from functools import partial

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.api_permissions import ReadOnlyRole, WriteRole
from accounts_app.models import ApiToken
from accounts_app.services import user_access_alive
from audit_app.context import AuditContext
from fastflow_site.api.lookups import get_or_404
from fastflow_site.api.negotiation import FirstRendererNegotiation
from fastflow_site.api.pagination import cursor_paginated_response, cursor_paginated_schema
from fastflow_site.api.serializers import LenientChoiceField, StringMapField, error_responses
from runs_app import services
from runs_app.errors import LogFileMissing
from runs_app.logs import (
    DEFAULT_CHUNK,
    MAX_LOG_OFFSET,
    artifact_response,
    log_missing,
    log_offset_parse,
    log_read,
    metrics_read,
    run_artifact,
    run_artifacts,
)
from runs_app.models import PipelineRun, RunStatus, TriggeredBy
from runs_app.sse import log_events

MAX_LOG_CHUNK = 4 * 1024 * 1024
OFFSET_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_LOG_OFFSET}

# Documentation of one server-sent event (the stream is a sequence of these).
LogStreamEvent = inline_serializer(
    name="LogStreamEvent",
    fields={
        "event": serializers.CharField(
            required=False, help_text='absent for log lines; "end" for the last event'
        ),
        "id": serializers.CharField(
            required=False, help_text="byte offset after this line, for Last-Event-ID"
        ),
        "data": serializers.CharField(
            help_text='the log line; for "end": {"status": ..., "offset": ...} as JSON'
        ),
    },
)


class ArtifactSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField(help_text="bytes")
    url = serializers.CharField(help_text="GET it to download the file")


class RunOutputSerializer(serializers.ModelSerializer):
    pipeline = serializers.CharField(source="pipeline_id")
    parent_run = serializers.UUIDField(source="parent_run_id", allow_null=True)
    scheduled_job = serializers.UUIDField(source="scheduled_job_id", allow_null=True)
    duration = serializers.FloatField(
        source="elapsed", allow_null=True, help_text="seconds; live while running"
    )
    env_vars = serializers.DictField(
        child=serializers.CharField(), help_text="the run's environment; secret values are ***"
    )
    parameters = serializers.DictField(child=serializers.CharField())
    limits = serializers.DictField(
        help_text="the limits in force for the run as its executor applied them (memory_bytes, "
        "cpus, pids, tmp_bytes where enforced; timeout_seconds, log_max_bytes; executor); "
        "{} before it started"
    )
    route = serializers.CharField(
        help_text="the label the run wrote to $FASTFLOW_ROUTE_FILE (on_route triggers); '' if none"
    )
    artifacts = serializers.SerializerMethodField(
        help_text="files kept from the run (the executed notebook of a notebook pipeline)"
    )

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "pipeline",
            "status",
            "triggered_by",
            "queued_at",
            "not_before",
            "started_at",
            "finished_at",
            "duration",
            "exit_code",
            "error_message",
            "parameters",
            "env_vars",
            "run_config_id",
            "git_commit",
            "parent_run",
            "scheduled_job",
            "retry_attempt",
            "chain_depth",
            "cancel_requested_at",
            "uv_version",
            "setup_duration",
            "peak_memory_bytes",
            "limits",
            "requeue_count",
            "log_file",
            "metrics_file",
            "container_id",
            "engine_id",
            "idempotency_key",
            "route",
            "restart_count",
            "artifacts",
        ]
        read_only_fields = fields

    @extend_schema_field(ArtifactSerializer(many=True))
    def get_artifacts(self, run: PipelineRun) -> list[dict]:
        return [
            {
                "name": artifact.name,
                "size": artifact.size,
                "url": reverse("api-run-artifact", args=[run.id, artifact.name]),
            }
            for artifact in run_artifacts(run=run)
        ]


def run_get(run_id: object) -> PipelineRun:
    return get_or_404(PipelineRun, f"run {run_id} not found", id=run_id)


class PipelineRunCreateApi(APIView):
    permission_classes = [WriteRole]

    class InputSerializer(serializers.Serializer):
        parameters = StringMapField(
            required=False,
            default=dict,
            help_text="environment variables for this run: valid names, string values",
        )
        run_config_id = serializers.CharField(
            required=False, allow_null=True, allow_blank=True, max_length=255, default=None
        )

    @extend_schema(
        operation_id="pipelines_runs_create",
        request=InputSerializer,
        responses={201: RunOutputSerializer} | error_responses(400, 401, 403, 404, 409, 413),
    )
    def post(self, request: Request, name: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.run_enqueue(
            pipeline=name,
            triggered_by=TriggeredBy.MANUAL,
            parameters=serializer.validated_data["parameters"],
            run_config_id=serializer.validated_data["run_config_id"] or None,
            audit=AuditContext.from_request(request, interface="api"),
        )
        return Response(RunOutputSerializer(run).data, status=status.HTTP_201_CREATED)


def run_log_check(run: PipelineRun) -> None:
    """404 `log_missing` for a finished run whose log file is gone (not an empty log)."""
    if log_missing(run=run):
        raise LogFileMissing(
            f"log file missing: the log of run {run.id} ({run.log_file}) is not in the data "
            "directory"
        )


class RunListApi(APIView):
    permission_classes = [ReadOnlyRole]

    class FilterSerializer(serializers.Serializer):
        pipeline = serializers.CharField(required=False, max_length=255)
        status = LenientChoiceField(choices=RunStatus.choices, required=False)
        triggered_by = serializers.CharField(required=False, max_length=64)
        since = serializers.DateTimeField(
            required=False, help_text="ISO 8601; runs queued at or after this moment"
        )
        cursor = serializers.CharField(
            required=False, help_text="from a previous page's `next` or `previous` link"
        )
        page_size = serializers.IntegerField(
            required=False, min_value=1, max_value=500, help_text="runs per page (default 50)"
        )

    @extend_schema(
        operation_id="runs_list",
        parameters=[FilterSerializer],
        responses={200: cursor_paginated_schema(RunOutputSerializer, "PaginatedRunList")}
        | error_responses(400, 401, 403),
        description="Newest first, by cursor: follow `next` for older runs. No total count "
        "(it would cost a scan of the history on every page).",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        runs = PipelineRun.objects.all()
        if "pipeline" in wanted:
            runs = runs.filter(pipeline_id=wanted["pipeline"])
        if "status" in wanted:
            runs = runs.filter(status=wanted["status"])
        if "triggered_by" in wanted:
            runs = runs.filter(triggered_by=wanted["triggered_by"])
        if "since" in wanted:
            runs = runs.filter(queued_at__gte=wanted["since"])
        # Every filter leads an index whose next column is queued_at (docs/schema.md).
        return cursor_paginated_response(
            request=request,
            view=self,
            queryset=runs,
            ordering=("-queued_at", "-id"),
            serializer_class=RunOutputSerializer,
        )


class RunDetailApi(APIView):
    permission_classes = [ReadOnlyRole]

    @extend_schema(
        operation_id="runs_retrieve",
        responses={200: RunOutputSerializer} | error_responses(401, 403, 404),
    )
    def get(self, request: Request, run_id: str) -> Response:
        return Response(RunOutputSerializer(run_get(run_id)).data)


class RunCancelApi(APIView):
    permission_classes = [WriteRole]

    @extend_schema(
        operation_id="runs_cancel",
        request=None,
        responses={202: RunOutputSerializer} | error_responses(401, 403, 404, 409),
        description="PENDING runs are cancelled at once; RUNNING runs are stopped by the engine.",
    )
    def post(self, request: Request, run_id: str) -> Response:
        run = services.run_cancel(
            run=run_get(run_id), audit=AuditContext.from_request(request, interface="api")
        )
        return Response(RunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunRetryApi(APIView):
    permission_classes = [WriteRole]

    @extend_schema(
        operation_id="runs_retry",
        request=None,
        responses={201: RunOutputSerializer} | error_responses(401, 403, 404, 409),
        description="A new PENDING run with the same parameters; only from a finished run.",
    )
    def post(self, request: Request, run_id: str) -> Response:
        run = services.run_retry(
            run=run_get(run_id),
            triggered_by=TriggeredBy.MANUAL,
            audit=AuditContext.from_request(request, interface="api"),
        )
        return Response(RunOutputSerializer(run).data, status=status.HTTP_201_CREATED)


class RunLogsApi(APIView):
    permission_classes = [ReadOnlyRole]
    content_negotiation_class = FirstRendererNegotiation

    class FilterSerializer(serializers.Serializer):
        offset = serializers.IntegerField(
            required=False, default=0, min_value=0, max_value=MAX_LOG_OFFSET
        )
        limit = serializers.IntegerField(
            required=False, default=DEFAULT_CHUNK, min_value=1, max_value=MAX_LOG_CHUNK
        )

    @extend_schema(
        operation_id="runs_logs",
        parameters=[FilterSerializer],
        responses={
            (200, "text/plain"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="Whole log lines from the byte offset. Headers: X-Next-Offset (ask "
                "for it next) and X-Run-Status (stop tailing once terminal and the body is "
                "empty).",
            )
        }
        | error_responses(400, 401, 403, 404),
    )
    def get(self, request: Request, run_id: str) -> HttpResponse:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        run = run_get(run_id)
        run_log_check(run)
        data, next_offset = log_read(
            run=run, offset=filters.validated_data["offset"], limit=filters.validated_data["limit"]
        )
        response = HttpResponse(data, content_type="text/plain; charset=utf-8")
        response["X-Next-Offset"] = str(next_offset)
        response["X-Run-Status"] = run.status
        response["Cache-Control"] = "no-store"
        return response


class RunLogStreamApi(APIView):
    permission_classes = [ReadOnlyRole]
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        operation_id="runs_logs_stream",
        parameters=[
            OpenApiParameter("offset", OFFSET_SCHEMA, description="byte offset to start from"),
            OpenApiParameter(
                "Last-Event-ID",
                OFFSET_SCHEMA,
                location=OpenApiParameter.HEADER,
                description="resume after this event (sent by EventSource on reconnect)",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=LogStreamEvent,
                description="One event per log line (id = byte offset after it), comments as "
                "keep-alives, and a final `event: end` with the run's status.",
            )
        }
        | error_responses(400, 401, 403, 404),
    )
    def get(self, request: Request, run_id: str) -> StreamingHttpResponse:
        raw = request.headers.get("Last-Event-ID") or request.query_params.get("offset") or "0"
        # Checked before the response starts: once streaming, an error can no longer be a 400.
        offset = log_offset_parse(raw=raw)
        run = run_get(run_id)
        run_log_check(run)
        api_token = request.auth if isinstance(request.auth, ApiToken) else None
        still_allowed = partial(user_access_alive, user=request.user, api_token=api_token)
        response = StreamingHttpResponse(
            log_events(run=run, offset=offset, still_allowed=still_allowed),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


class RunMetricsApi(APIView):
    permission_classes = [ReadOnlyRole]

    class OutputSerializer(serializers.Serializer):
        run_id = serializers.UUIDField()
        samples = serializers.ListField(
            child=serializers.DictField(), help_text="metric samples in recording order"
        )

    @extend_schema(
        operation_id="runs_metrics",
        responses={200: OutputSerializer} | error_responses(401, 403, 404),
    )
    def get(self, request: Request, run_id: str) -> Response:
        run = run_get(run_id)
        return Response({"run_id": str(run.id), "samples": metrics_read(run=run)})


class RunArtifactApi(APIView):
    permission_classes = [ReadOnlyRole]
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        operation_id="runs_artifact",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="the file, as an attachment"
            )
        }
        | error_responses(401, 403, 404),
    )
    def get(self, request: Request, run_id: str, name: str) -> FileResponse:
        run = run_get(run_id)
        artifact = run_artifact(run=run, name=name)
        if artifact is None:
            raise NotFound(f"run {run.id} has no artifact {name!r}")
        return artifact_response(run=run, artifact=artifact)
