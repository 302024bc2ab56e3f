from __future__ import annotations

from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from accounts_app.login_links import login_link_consume
from accounts_app.ratelimit import rate_limited
from accounts_app.services import user_login_record
from audit_app.context import AuditContext


@never_cache
@rate_limited("login-link")
def login_link(request: HttpRequest, token: str) -> HttpResponse:
    user = login_link_consume(token=token)
    if user is None:
        return render(
            request,
            "accounts_app/login_link_invalid.html",
            status=400,
        )
    login(request, user, backend="accounts_app.backends.RoleBackend")
    user_login_record(user=user, audit=AuditContext.login(request), via="login link")
    return redirect("admin:index")
