"""Git sync over the API: the repository's state (READONLY) and Sync now (WRITE).

Configuration stays in the admin (ADMIN): it holds credentials and decides what code runs.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.api_permissions import ReadOnlyRole, WriteRole
from audit_app.context import AuditContext
from fastflow_site.api.serializers import error_responses
from gitsync_app import ssh
from gitsync_app.models import GitRepository
from gitsync_app.services import repository_get, repository_request_sync


class RepositoryOutputSerializer(serializers.ModelSerializer):
    syncing = serializers.SerializerMethodField(help_text="a sync is running now")
    pinned_host_keys = serializers.SerializerMethodField(help_text="fingerprints")
    offered_host_keys = serializers.SerializerMethodField(
        help_text="fingerprints the server offered at the last sync, not trusted until pinned"
    )
    public_key = serializers.CharField(source="ssh_public_key", help_text="of the deploy key")
    has_token = serializers.BooleanField()
    has_deploy_key = serializers.BooleanField()
    webhook_enabled = serializers.BooleanField(source="has_webhook_secret")

    class Meta:
        model = GitRepository
        fields = [
            "url",
            "branch",
            "subdir",
            "auth_method",
            "enabled",
            "auto_sync_interval",
            "commit",
            "commit_message",
            "commit_author",
            "committed_at",
            "previous_commit",
            "synced_at",
            "last_attempt_at",
            "last_error",
            "sync_requested_at",
            "sync_requested_by",
            "syncing",
            "has_token",
            "has_deploy_key",
            "public_key",
            "pinned_host_keys",
            "offered_host_keys",
            "webhook_enabled",
        ]
        read_only_fields = fields

    def get_syncing(self, obj: GitRepository) -> bool:
        return bool(obj.lease_holder)

    def get_pinned_host_keys(self, obj: GitRepository) -> list[str]:
        return ssh.host_key_fingerprints(obj.ssh_known_hosts)

    def get_offered_host_keys(self, obj: GitRepository) -> list[str]:
        return ssh.host_key_fingerprints(obj.ssh_offered_host_keys)


def _repository() -> GitRepository:
    repo = repository_get()
    if repo is None:
        raise NotFound("git sync is not configured")
    return repo


class RepositoryApi(APIView):
    permission_classes = [ReadOnlyRole]

    @extend_schema(
        operation_id="git_retrieve",
        responses={200: RepositoryOutputSerializer} | error_responses(401, 403, 404),
        description="The synced repository: configuration (no credentials) and the last sync.",
    )
    def get(self, request: Request) -> Response:
        return Response(RepositoryOutputSerializer(_repository()).data)


class RepositorySyncApi(APIView):
    permission_classes = [WriteRole]

    @extend_schema(
        operation_id="git_sync",
        request=None,
        responses={202: RepositoryOutputSerializer} | error_responses(401, 403, 404, 409),
        description=(
            "Request a sync now: the engine leading the scheduler fetches the branch within "
            "about a second and switches to its newest commit; GET /api/git/ shows the result."
        ),
    )
    def post(self, request: Request) -> Response:
        _repository()
        repo = repository_request_sync(
            requested_by=f"api: {request.user.get_username()}",
            audit=AuditContext.from_request(request, interface="api"),
        )
        return Response(RepositoryOutputSerializer(repo).data, status=status.HTTP_202_ACCEPTED)
