from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from accounts_app import views

urlpatterns = [
    path("login-link/<str:token>", views.login_link, name="login_link"),
    path("invite", views.invite, name="invite"),
    # Before admin.site.urls in the root urlconf: the admin has no password login of its own.
    path("admin/login/", views.admin_login_redirect, name="admin_login_redirect"),
    path("account/", views.account_profile, name="account_profile"),
    path("account/tokens/", views.account_token_issue, name="account_token_issue"),
    path(
        "account/tokens/<uuid:token_id>/revoke/",
        views.account_token_revoke,
        name="account_token_revoke",
    ),
    # allauth's connections page would offer "disconnect", which our User fields don't follow.
    path("accounts/social/connections/", RedirectView.as_view(pattern_name="account_profile")),
]
