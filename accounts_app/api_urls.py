from __future__ import annotations

from django.urls import path

from accounts_app import api, audit_api

urlpatterns = [
    path("users/", api.UserListApi.as_view(), name="api-users"),
    path("users/<uuid:user_id>/", api.UserDetailApi.as_view(), name="api-user"),
    path("invitations/", api.InvitationListApi.as_view(), name="api-invitations"),
    path(
        "invitations/<uuid:invitation_id>/",
        api.InvitationDetailApi.as_view(),
        name="api-invitation",
    ),
    path("tokens/", api.TokenListApi.as_view(), name="api-tokens"),
    path("tokens/<uuid:token_id>/", api.TokenDetailApi.as_view(), name="api-token"),
    path("audit/", audit_api.AuditListApi.as_view(), name="api-audit"),
]
