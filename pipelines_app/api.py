"""Pipelines over the API: list, detail, enable/disable, run discovery (starting a run is in
runs_app/api.py, under the same /api/pipelines/<name>/runs/ URL)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.api_permissions import ReadOnlyRole, ReadOrWrite, WriteRole
from accounts_app.roles import Role
from audit_app.context import AuditContext
from fastflow_site.api.lookups import get_or_404
from fastflow_site.api.pagination import paginated_response, paginated_schema
from fastflow_site.api.serializers import error_responses
from pipelines_app import services as pipeline_services
from pipelines_app.models import Pipeline, PipelineState


def pipeline_get(name: str) -> Pipeline:
    pipelines = Pipeline.objects.with_last_run()
    return get_or_404(pipelines, f"pipeline {name!r} not found", pipeline_name=name)


class PipelineOutputSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="pipeline_name")
    description = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    state = serializers.ChoiceField(
        choices=PipelineState.choices,
        read_only=True,
        help_text="ready, disabled, broken or missing",
    )
    is_runnable = serializers.BooleanField()
    not_runnable_reason = serializers.CharField()
    last_run_status = serializers.CharField(allow_null=True, default=None)
    last_run_at = serializers.DateTimeField(allow_null=True, default=None)

    class Meta:
        model = Pipeline
        fields = [
            "name",
            "description",
            "tags",
            "state",
            "enabled",
            "is_runnable",
            "not_runnable_reason",
            "discovery_error",
            "is_missing",
            "has_requirements",
            "total_runs",
            "successful_runs",
            "failed_runs",
            "webhook_runs",
            "last_run_status",
            "last_run_at",
            "last_cache_warmup",
            "cache_warmup_error",
            "discovered_at",
            "git_commit",
        ]
        read_only_fields = fields


class PipelineDetailOutputSerializer(PipelineOutputSerializer):
    metadata = serializers.SerializerMethodField(
        help_text="normalised pipeline.json; webhook keys shown to admins only"
    )

    class Meta(PipelineOutputSerializer.Meta):
        fields = [*PipelineOutputSerializer.Meta.fields, "metadata"]
        read_only_fields = fields

    def get_metadata(self, pipeline: Pipeline) -> dict[str, Any]:
        user = self.context["request"].user
        reveal = getattr(user, "role", None) == Role.ADMIN
        return pipeline.metadata_redacted(reveal_credentials=reveal)


class PipelineListApi(APIView):
    permission_classes = [ReadOnlyRole]

    class FilterSerializer(serializers.Serializer):
        tag = serializers.CharField(required=False, max_length=255)
        enabled = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(
        operation_id="pipelines_list",
        parameters=[FilterSerializer],
        responses={200: paginated_schema(PipelineOutputSerializer, "PaginatedPipelineList")}
        | error_responses(400, 401, 403, 404),
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        pipelines = Pipeline.objects.with_last_run().order_by("pipeline_name")
        if wanted.get("enabled") is not None:
            pipelines = pipelines.filter(enabled=wanted["enabled"])
        if "tag" in wanted:
            # Tags live in JSON; containment lookups are not portable to SQLite, and the
            # pipeline table is small, so match in Python and filter by name.
            names = [
                name
                for name, metadata in pipelines.values_list("pipeline_name", "metadata")
                if wanted["tag"] in ((metadata or {}).get("tags") or [])
            ]
            pipelines = pipelines.filter(pipeline_name__in=names)
        return paginated_response(
            request=request,
            view=self,
            queryset=pipelines,
            serializer_class=PipelineOutputSerializer,
        )


class PipelineDetailApi(APIView):
    permission_classes = [ReadOrWrite]

    class InputSerializer(serializers.Serializer):
        enabled = serializers.BooleanField()

    @extend_schema(
        operation_id="pipelines_retrieve",
        responses={200: PipelineDetailOutputSerializer} | error_responses(401, 403, 404),
    )
    def get(self, request: Request, name: str) -> Response:
        serializer = PipelineDetailOutputSerializer(
            pipeline_get(name), context={"request": request}
        )
        return Response(serializer.data)

    @extend_schema(
        operation_id="pipelines_partial_update",
        request=InputSerializer,
        responses={200: PipelineDetailOutputSerializer} | error_responses(400, 401, 403, 404, 413),
        description="Enable or disable the pipeline (the pipeline.json `enabled` still applies).",
    )
    def patch(self, request: Request, name: str) -> Response:
        pipeline = pipeline_get(name)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pipeline_services.pipeline_set_enabled(
            pipeline=pipeline,
            enabled=serializer.validated_data["enabled"],
            audit=AuditContext.from_request(request, interface="api"),
        )
        output = PipelineDetailOutputSerializer(pipeline_get(name), context={"request": request})
        return Response(output.data)


class PipelineSyncApi(APIView):
    permission_classes = [WriteRole]

    class OutputSerializer(serializers.Serializer):
        summary = serializers.CharField()
        found = serializers.ListField(child=serializers.CharField())
        created = serializers.ListField(child=serializers.CharField())
        updated = serializers.ListField(child=serializers.CharField())
        missing = serializers.ListField(
            child=serializers.CharField(), help_text="folders gone since the last sync"
        )
        requirements_changed = serializers.ListField(child=serializers.CharField())
        errors = serializers.DictField(
            child=serializers.CharField(), help_text="pipeline → configuration error"
        )
        warnings = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
        skipped = serializers.DictField(
            child=serializers.CharField(), help_text="folder → why it is not a pipeline"
        )

    @extend_schema(
        operation_id="pipelines_sync",
        request=None,
        responses={200: OutputSerializer} | error_responses(401, 403, 503),
        description="Scan the pipelines directory now (the engine also does so periodically).",
    )
    def post(self, request: Request) -> Response:
        report = pipeline_services.pipelines_sync()
        data = {
            "summary": report.summary(),
            "found": [found.name for found in report.pipelines],
            "created": report.created,
            "updated": report.updated,
            "missing": report.missing,
            "requirements_changed": report.requirements_changed,
            "errors": report.errors,
            "warnings": report.warnings,
            "skipped": dict(report.skipped),
        }
        return Response(self.OutputSerializer(data).data)
