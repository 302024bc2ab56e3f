"""The account pages outside the admin: ways into the login and the signed-in user's own page.

- Ways in: one-time login links (`createadmin` / `loginlink`), invitation links, and the admin's
  login URL, which goes to the provider login (there is no password form).
- `/account/`: linked providers and personal API tokens. Every role reaches it (READONLY users
  cannot open the API token admin), so this is where people issue and revoke their own tokens.
  A new token is rendered once in the response and nowhere else: not in messages (which are
  stored in a cookie or the session) and not in any log.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from accounts_app.adapters import INVITATION_SESSION_KEY
from accounts_app.errors import InvalidInput
from accounts_app.forms import TokenIssueForm
from accounts_app.login_links import login_link_consume
from accounts_app.models import ApiToken
from accounts_app.ratelimit import rate_limited
from accounts_app.services import (
    invitation_find_valid,
    token_issue,
    token_revoke,
    user_login_record,
)
from audit_app.context import AuditContext

# --- Ways into the login ------------------------------------------------------------------------


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


@never_cache
@require_GET
@rate_limited("invite")
def invite(request: HttpRequest) -> HttpResponse:
    """Remember a valid invitation in the session and send the visitor to the provider login.

    The invitation is only used up when the provider login comes back (see the adapter).
    """
    token = request.GET.get("token", "")
    if invitation_find_valid(token=token) is None:
        return render(request, "accounts_app/invitation_invalid.html", status=400)
    if request.user.is_authenticated:
        # An invitation creates a new account; don't mix it up with whoever is logged in.
        logout(request)
    request.session[INVITATION_SESSION_KEY] = token
    return redirect("account_login")


@never_cache
def admin_login_redirect(request: HttpRequest) -> HttpResponse:
    """The admin has no password form: send its login to the provider login page."""
    url = reverse("account_login")
    next_url = request.GET.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        url = f"{url}?{urlencode({'next': next_url})}"
    return redirect(url)


# --- The account page ---------------------------------------------------------------------------


def _render(
    request: HttpRequest, *, form: TokenIssueForm, new_token: str = "", status: int = 200
) -> HttpResponse:
    user = request.user
    context = {
        **admin.site.each_context(request),
        "title": "Your account",
        "account": user,
        "tokens": ApiToken.objects.filter(user=user).order_by("-created_at"),
        "now": timezone.now(),
        "form": form,
        "new_token": new_token,
    }
    return TemplateResponse(request, "accounts_app/account.html", context, status=status)


@never_cache
@login_required
@require_GET
def account_profile(request: HttpRequest) -> HttpResponse:
    return _render(request, form=TokenIssueForm())


@never_cache
@login_required
@require_POST
@sensitive_variables("jwt")
def account_token_issue(request: HttpRequest) -> HttpResponse:
    form = TokenIssueForm(request.POST)
    if not form.is_valid():
        return _render(request, form=form, status=400)
    try:
        _, jwt = token_issue(
            user=request.user,
            days=form.cleaned_data["days"],
            name=form.cleaned_data["name"],
            audit=AuditContext.from_request(request, interface="admin"),
        )
    except InvalidInput as exc:
        form.add_error(None, str(exc))
        return _render(request, form=form, status=400)
    return _render(request, form=TokenIssueForm(), new_token=jwt)


@never_cache
@login_required
@require_POST
def account_token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    if token_revoke(
        token_id=token_id,
        actor=request.user,
        audit=AuditContext.from_request(request, interface="admin"),
    ):
        messages.success(request, "Token revoked.")
    else:
        messages.error(request, "No such token.")
    return redirect("account_profile")
