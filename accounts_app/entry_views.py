"""Ways into the login: invitation links and the admin's login URL."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts_app.adapters import INVITATION_SESSION_KEY
from accounts_app.ratelimit import rate_limited
from accounts_app.services import invitation_find_valid


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
