"""Users, invitations and API tokens over the API. Views parse, check the role, call a service."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts_app.api_permissions import AdminRole, AnyRole
from accounts_app.models import ApiToken, Invitation, User
from accounts_app.roles import Role
from accounts_app.services import (
    INVITATION_DEFAULT_DAYS,
    INVITATION_MAX_DAYS,
    TOKEN_MAX_DAYS,
    invitation_create,
    invitation_revoke,
    token_issue,
    token_revoke,
    tokens_visible_to,
    user_update,
)
from audit_app.context import AuditContext
from fastflow_site.api.lookups import get_or_404
from fastflow_site.api.pagination import paginated_response, paginated_schema
from fastflow_site.api.serializers import error_responses


class UserOutputSerializer(serializers.ModelSerializer):
    # Plain strings: both may be empty, which the email/uri formats would not allow.
    email = serializers.CharField(read_only=True)
    avatar_url = serializers.CharField(read_only=True)
    github_linked = serializers.SerializerMethodField()
    google_linked = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "role",
            "blocked",
            "github_linked",
            "google_linked",
            "avatar_url",
            "last_login",
            "created_at",
        ]
        read_only_fields = fields

    def get_github_linked(self, user: User) -> bool:
        return bool(user.github_id)

    def get_google_linked(self, user: User) -> bool:
        return bool(user.google_id)


class UserListApi(APIView):
    permission_classes = [AdminRole]

    @extend_schema(
        operation_id="users_list",
        responses={200: paginated_schema(UserOutputSerializer, "PaginatedUserList")}
        | error_responses(401, 403),
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=User.objects.order_by("username"),
            serializer_class=UserOutputSerializer,
        )


class UserDetailApi(APIView):
    permission_classes = [AdminRole]

    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices, required=False)
        blocked = serializers.BooleanField(required=False)

    @extend_schema(
        operation_id="users_partial_update",
        request=InputSerializer,
        responses={200: UserOutputSerializer} | error_responses(400, 401, 403, 404, 409),
        description="Change a user's role and/or block them (blocking revokes their API tokens). "
        "409 when it would leave no unblocked ADMIN.",
    )
    def patch(self, request: Request, user_id: str) -> Response:
        user = get_or_404(User, "user not found", id=user_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_update(
            user=user,
            actor=request.user,
            audit=AuditContext.from_request(request, interface="api"),
            **serializer.validated_data,
        )
        user.refresh_from_db()
        return Response(UserOutputSerializer(user).data)


class InvitationOutputSerializer(serializers.ModelSerializer):
    status = serializers.CharField(help_text="valid | used | expired")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "recipient_email",
            "role",
            "status",
            "expires_at",
            "created_at",
            "created_by",
        ]
        read_only_fields = fields


class InvitationListApi(APIView):
    permission_classes = [AdminRole]

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=Role.choices, default=Role.READONLY)
        days = serializers.IntegerField(
            min_value=1, max_value=INVITATION_MAX_DAYS, default=INVITATION_DEFAULT_DAYS
        )

    class CreatedSerializer(InvitationOutputSerializer):
        link = serializers.CharField(
            help_text="the invitation link; returned only in this response"
        )

        class Meta(InvitationOutputSerializer.Meta):
            fields = [*InvitationOutputSerializer.Meta.fields, "link"]
            read_only_fields = fields

    @extend_schema(
        operation_id="invitations_list",
        responses={200: paginated_schema(InvitationOutputSerializer, "PaginatedInvitationList")}
        | error_responses(401, 403),
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=Invitation.objects.select_related("created_by").order_by("-created_at"),
            serializer_class=InvitationOutputSerializer,
        )

    @extend_schema(
        operation_id="invitations_create",
        request=InputSerializer,
        responses={201: CreatedSerializer} | error_responses(400, 401, 403),
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, link = invitation_create(
            created_by=request.user,
            audit=AuditContext.from_request(request, interface="api"),
            **serializer.validated_data,
        )
        invitation.link = link
        return Response(self.CreatedSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailApi(APIView):
    permission_classes = [AdminRole]

    @extend_schema(
        operation_id="invitations_destroy", responses={204: None} | error_responses(401, 403, 404)
    )
    def delete(self, request: Request, invitation_id: str) -> Response:
        invitation = get_or_404(Invitation, "invitation not found", id=invitation_id)
        invitation_revoke(
            invitation=invitation, audit=AuditContext.from_request(request, interface="api")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenOutputSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    expired = serializers.BooleanField(source="is_expired")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "user", "created_at", "expires_at", "expired"]
        read_only_fields = fields


class TokenListApi(APIView):
    """Own tokens for everyone; ADMIN sees everybody's."""

    permission_classes = [AnyRole]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        days = serializers.IntegerField(min_value=1, max_value=TOKEN_MAX_DAYS, required=False)

    class CreatedSerializer(TokenOutputSerializer):
        token = serializers.CharField(help_text="the bearer token; returned only in this response")

        class Meta(TokenOutputSerializer.Meta):
            fields = [*TokenOutputSerializer.Meta.fields, "token"]
            read_only_fields = fields

    @extend_schema(
        operation_id="tokens_list",
        responses={200: paginated_schema(TokenOutputSerializer, "PaginatedTokenList")}
        | error_responses(401, 403),
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=tokens_visible_to(user=request.user).order_by("-created_at"),
            serializer_class=TokenOutputSerializer,
        )

    @extend_schema(
        operation_id="tokens_create",
        request=InputSerializer,
        responses={201: CreatedSerializer} | error_responses(400, 401, 403),
        description="Issue a token for yourself. The token value is in this response only.",
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_token, jwt = token_issue(
            user=request.user,
            audit=AuditContext.from_request(request, interface="api"),
            **serializer.validated_data,
        )
        api_token.token = jwt  # the row keeps only the hash; this instance is not saved again
        return Response(self.CreatedSerializer(api_token).data, status=status.HTTP_201_CREATED)


class TokenDetailApi(APIView):
    permission_classes = [AnyRole]

    @extend_schema(
        operation_id="tokens_destroy", responses={204: None} | error_responses(401, 403, 404)
    )
    def delete(self, request: Request, token_id: str) -> Response:
        if not token_revoke(
            token_id=token_id,
            actor=request.user,
            audit=AuditContext.from_request(request, interface="api"),
        ):
            raise NotFound("token not found")
        return Response(status=status.HTTP_204_NO_CONTENT)
