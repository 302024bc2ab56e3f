"""The signed-in user's own page: linked providers and personal API tokens.

Every role reaches it (READONLY users cannot open the API token admin), so this is where people
issue and revoke their own tokens. A new token is rendered once in the response and nowhere else:
not in messages (which are stored in a cookie or the session) and not in any log.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from accounts_app.errors import InvalidInput
from accounts_app.forms import TokenIssueForm
from accounts_app.models import ApiToken
from accounts_app.services import token_issue, token_revoke
from audit_app.context import AuditContext


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
