"""Secrets over the API (admins only). Secret values are write-only; parameters are readable."""

from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.api_permissions import AdminRole, WriteRole
from audit_app.context import AuditContext
from fastflow_site.api.errors import ApiError
from fastflow_site.api.lookups import get_or_404
from fastflow_site.api.pagination import paginated_response, paginated_schema
from fastflow_site.api.serializers import error_responses
from secrets_app.models import Secret
from secrets_app.services import (
    ENCRYPTED_VALUE_MAX_BYTES,
    encrypted_value_create,
    secret_delete,
    secret_set,
)

VALUE_MAX_LENGTH = 64 * 1024


class SecretOutputSerializer(serializers.ModelSerializer):
    value = serializers.SerializerMethodField(
        help_text="the value of a parameter; always null for a secret (write-only)"
    )

    class Meta:
        model = Secret
        fields = ["key", "is_parameter", "value", "created_at", "updated_at"]
        read_only_fields = fields

    def get_value(self, secret: Secret) -> str | None:
        # Parameters are stored in plaintext on purpose; secret ciphertext never leaves.
        return secret.value if secret.is_parameter else None


class SecretValueSerializer(serializers.Serializer):
    value = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=VALUE_MAX_LENGTH
    )
    is_parameter = serializers.BooleanField(
        default=False, help_text="true: stored and shown in plaintext; false: encrypted, write-only"
    )


class SecretCreateSerializer(SecretValueSerializer):
    key = serializers.CharField(max_length=255, help_text="an environment variable name")


def secret_get(key: str) -> Secret:
    return get_or_404(Secret, f"secret {key!r} not found", key=key)


class SecretListApi(APIView):
    permission_classes = [AdminRole]

    @extend_schema(
        operation_id="secrets_list",
        responses={200: paginated_schema(SecretOutputSerializer, "PaginatedSecretList")}
        | error_responses(401, 403, 404),
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=Secret.objects.order_by("key"),
            serializer_class=SecretOutputSerializer,
        )

    @extend_schema(
        operation_id="secrets_create",
        request=SecretCreateSerializer,
        responses={201: SecretOutputSerializer} | error_responses(400, 401, 403, 409, 413),
    )
    def post(self, request: Request) -> Response:
        serializer = SecretCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = serializer.validated_data["key"]
        if Secret.objects.filter(key=key).exists():
            raise ApiError(
                f"secret {key!r} already exists; use PUT /api/secrets/{key}/ to replace it",
                code="already_exists",
                status_code=status.HTTP_409_CONFLICT,
            )
        secret = secret_set(
            audit=AuditContext.from_request(request, interface="api"), **serializer.validated_data
        )
        return Response(SecretOutputSerializer(secret).data, status=status.HTTP_201_CREATED)


class SecretDetailApi(APIView):
    permission_classes = [AdminRole]

    @extend_schema(
        operation_id="secrets_retrieve",
        responses={200: SecretOutputSerializer} | error_responses(401, 403, 404),
    )
    def get(self, request: Request, key: str) -> Response:
        return Response(SecretOutputSerializer(secret_get(key)).data)

    @extend_schema(
        operation_id="secrets_update",
        request=SecretValueSerializer,
        responses={200: SecretOutputSerializer, 201: SecretOutputSerializer}
        | error_responses(400, 401, 403, 404, 413),
        description="Create or replace the value (201 when created). A key with control "
        "characters cannot be addressed at all (404).",
    )
    def put(self, request: Request, key: str) -> Response:
        # The key (from the path) is checked by secret_set, like every other secret write.
        serializer = SecretValueSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        existed = Secret.objects.filter(key=key).exists()
        secret = secret_set(
            key=key,
            audit=AuditContext.from_request(request, interface="api"),
            **serializer.validated_data,
        )
        return Response(
            SecretOutputSerializer(secret).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )

    @extend_schema(
        operation_id="secrets_destroy",
        responses={204: None} | error_responses(401, 403, 404),
    )
    def delete(self, request: Request, key: str) -> Response:
        if not secret_delete(key=key, audit=AuditContext.from_request(request, interface="api")):
            raise NotFound(f"secret {key!r} not found")
        return Response(status=status.HTTP_204_NO_CONTENT)


class EncryptedValueCreateApi(APIView):
    """Encrypt a value for pipeline.json's `encrypted_env` (WRITE; nothing is stored)."""

    permission_classes = [WriteRole]

    class InputSerializer(serializers.Serializer):
        value = serializers.CharField(trim_whitespace=False, max_length=ENCRYPTED_VALUE_MAX_BYTES)
        name = serializers.CharField(
            required=False,
            default="",
            allow_blank=True,
            max_length=255,
            help_text="optional variable name; the answer's `snippet` is then ready to paste",
        )

    class OutputSerializer(serializers.Serializer):
        encrypted = serializers.CharField(help_text="the Fernet token for encrypted_env")
        snippet = serializers.CharField(help_text='"NAME": "<token>", a line for pipeline.json')

    @extend_schema(
        operation_id="encrypted_values_create",
        request=InputSerializer,
        responses={201: OutputSerializer} | error_responses(400, 401, 403, 413),
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        name = serializer.validated_data["name"]
        token = encrypted_value_create(value=serializer.validated_data["value"], name=name)
        snippet = f"{json.dumps(name or 'NAME')}: {json.dumps(token)}"
        return Response({"encrypted": token, "snippet": snippet}, status=status.HTTP_201_CREATED)
