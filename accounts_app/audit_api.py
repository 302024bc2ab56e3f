"""`GET /api/audit/` (ADMIN only): the audit log, newest first, with filters.

An interface over audit_app, kept here with the role check every API view uses: audit_app sits
below every app that records into it, accounts_app included, so it cannot import the check.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.api_permissions import AdminRole
from audit_app.models import ActorType, AuditEntry, Interface
from audit_app.services import audit_entries
from fastflow_site.api.pagination import paginated_response, paginated_schema
from fastflow_site.api.serializers import error_responses


class AuditEntryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", *AuditEntry.FIELDS]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False, max_length=64, help_text="e.g. run.cancel")
    actor_type = serializers.ChoiceField(choices=ActorType.choices, required=False)
    interface = serializers.ChoiceField(choices=Interface.choices, required=False)
    actor = serializers.CharField(required=False, max_length=255, help_text="actor name contains")
    target_type = serializers.CharField(required=False, max_length=64)
    target_id = serializers.CharField(required=False, max_length=255)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    q = serializers.CharField(required=False, max_length=255, help_text="search")

    def validate(self, attrs: dict) -> dict:
        if attrs.get("since") and attrs.get("until") and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": "must not be before since"})
        return attrs


class AuditListApi(APIView):
    permission_classes = [AdminRole]

    @extend_schema(
        operation_id="audit_list",
        parameters=[
            AuditFilterSerializer,
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
        responses={200: paginated_schema(AuditEntryOutputSerializer, "PaginatedAuditEntryList")}
        | error_responses(400, 401, 403, 404),
    )
    def get(self, request: Request) -> Response:
        filters = AuditFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated_response(
            request=request,
            view=self,
            queryset=audit_entries(filters=filters.validated_data),
            serializer_class=AuditEntryOutputSerializer,
        )
