"""Schedules over the API: list, create, read, change, delete (cron validated by the services)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.api_permissions import ReadOrWrite
from audit_app.context import AuditContext
from fastflow_site.api.lookups import get_or_404
from fastflow_site.api.pagination import paginated_response, paginated_schema
from fastflow_site.api.serializers import LenientChoiceField, error_responses
from pipelines_app.models import Pipeline
from runs_app import schedule_services
from runs_app.models import ScheduledJob, ScheduleSource, TriggerType


class ScheduleOutputSerializer(serializers.ModelSerializer):
    pipeline = serializers.CharField(source="pipeline_id")
    next_fire_times = serializers.SerializerMethodField(
        help_text="the next five fire times (UTC); empty when disabled or the window is over"
    )

    class Meta:
        model = ScheduledJob
        fields = [
            "id",
            "pipeline",
            "trigger_type",
            "trigger_value",
            "enabled",
            "source",
            "run_config_id",
            "start_date",
            "end_date",
            "created_at",
            "updated_at",
            "next_fire_times",
        ]
        read_only_fields = fields

    def get_next_fire_times(self, job: ScheduledJob) -> list[str]:
        if not job.enabled:
            return []
        times = schedule_services.scheduledjob_next_fire_times(job=job)
        return [moment.isoformat() for moment in times]


class ScheduleInputSerializer(serializers.Serializer):
    pipeline = serializers.CharField(max_length=255)
    trigger_type = LenientChoiceField(choices=TriggerType.choices)
    trigger_value = serializers.CharField(
        max_length=255, help_text="5-field cron (UTC, 0 and 7 = Sunday) or interval seconds"
    )
    enabled = serializers.BooleanField(default=True)
    run_config_id = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default=""
    )
    start_date = serializers.DateTimeField(required=False, allow_null=True, default=None)
    end_date = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_pipeline(self, name: str) -> Pipeline:
        pipeline = Pipeline.objects.filter(pipeline_name=name).first()
        if pipeline is None:
            raise serializers.ValidationError(f"unknown pipeline {name!r}")
        return pipeline


def schedule_get(schedule_id: object) -> ScheduledJob:
    return get_or_404(ScheduledJob, f"schedule {schedule_id} not found", id=schedule_id)


class ScheduleListApi(APIView):
    permission_classes = [ReadOrWrite]

    class FilterSerializer(serializers.Serializer):
        pipeline = serializers.CharField(required=False, max_length=255)
        enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
        source = LenientChoiceField(choices=ScheduleSource.choices, required=False)

    @extend_schema(
        operation_id="schedules_list",
        parameters=[FilterSerializer],
        responses={200: paginated_schema(ScheduleOutputSerializer, "PaginatedScheduleList")}
        | error_responses(400, 401, 403, 404),
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        jobs = ScheduledJob.objects.order_by("-created_at", "-id")
        if "pipeline" in wanted:
            jobs = jobs.filter(pipeline_id=wanted["pipeline"])
        if wanted.get("enabled") is not None:
            jobs = jobs.filter(enabled=wanted["enabled"])
        if "source" in wanted:
            jobs = jobs.filter(source=wanted["source"])
        return paginated_response(
            request=request, view=self, queryset=jobs, serializer_class=ScheduleOutputSerializer
        )

    @extend_schema(
        operation_id="schedules_create",
        request=ScheduleInputSerializer,
        responses={201: ScheduleOutputSerializer} | error_responses(400, 401, 403, 413),
    )
    def post(self, request: Request) -> Response:
        serializer = ScheduleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = schedule_services.scheduledjob_create(
            audit=AuditContext.from_request(request, interface="api"), **serializer.validated_data
        )
        return Response(ScheduleOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class ScheduleDetailApi(APIView):
    permission_classes = [ReadOrWrite]

    @extend_schema(
        operation_id="schedules_retrieve",
        responses={200: ScheduleOutputSerializer} | error_responses(401, 403, 404),
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        return Response(ScheduleOutputSerializer(schedule_get(schedule_id)).data)

    @extend_schema(
        operation_id="schedules_partial_update",
        request=ScheduleInputSerializer(partial=True),
        responses={200: ScheduleOutputSerializer} | error_responses(400, 401, 403, 404, 409, 413),
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        job = schedule_get(schedule_id)
        serializer = ScheduleInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        job = schedule_services.scheduledjob_update(
            job=job,
            audit=AuditContext.from_request(request, interface="api"),
            **serializer.validated_data,
        )
        return Response(ScheduleOutputSerializer(job).data)

    @extend_schema(
        operation_id="schedules_destroy",
        responses={204: None} | error_responses(401, 403, 404, 409),
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        job = schedule_get(schedule_id)
        schedule_services.scheduledjob_delete(
            job=job, audit=AuditContext.from_request(request, interface="api")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
