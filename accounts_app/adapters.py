"""allauth adapters: allauth runs OAuth (state, token exchange, profile); we decide who gets in.

`pre_social_login` hands the provider's answer to `services.user_from_social_login` (or, for the
"link another provider" flow, `services.user_link_provider`) and either attaches the resulting
user to the social login or stops the flow with a refusal page. allauth's own signup is never
reached.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base import AuthProcess
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse

from accounts_app.errors import LoginRefused
from accounts_app.models import User
from accounts_app.services import (
    ProviderEmail,
    SocialIdentity,
    user_from_social_login,
    user_link_provider,
)
from audit_app.context import AuditContext

INVITATION_SESSION_KEY = "fastflow_invitation_token"
REFUSED_LINK_ANONYMOUS = "Log in first, then link another provider from your account page."


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Users are created only by our rules in pre_social_login (invitation, initial admin).
        return False


def identity_from_sociallogin(sociallogin: SocialLogin) -> SocialIdentity:
    account = sociallogin.account
    data: dict[str, Any] = account.extra_data or {}
    emails = tuple(
        ProviderEmail(email=e.email, verified=bool(e.verified), primary=bool(e.primary))
        for e in sociallogin.email_addresses
        if e.email
    )
    if account.provider == "github":
        hint = data.get("login") or ""
    else:
        hint = (data.get("email") or "").partition("@")[0]
    try:
        avatar = account.get_avatar_url() or ""
    except (AttributeError, KeyError):
        avatar = ""
    return SocialIdentity(
        provider=account.provider,
        uid=str(account.uid),
        emails=emails,
        username_hint=hint,
        avatar_url=avatar,
    )


def refusal_response(request: HttpRequest, exc: LoginRefused) -> ImmediateHttpResponse:
    response = render(
        request,
        "socialaccount/login_refused.html",
        {"message": str(exc), "reason": exc.reason},
        status=403,
    )
    return ImmediateHttpResponse(response)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        identity = identity_from_sociallogin(sociallogin)
        try:
            if sociallogin.state.get("process") == AuthProcess.CONNECT:
                if not request.user.is_authenticated:
                    raise LoginRefused(REFUSED_LINK_ANONYMOUS, reason="not_logged_in")
                # allauth saves request.user itself afterwards, so update that very instance;
                # its connect flow then stores the SocialAccount row.
                user_link_provider(user=request.user, identity=identity)
                return
            token = request.session.pop(INVITATION_SESSION_KEY, None)
            user = user_from_social_login(
                identity=identity, invitation_token=token, audit=AuditContext.login(request)
            ).user
        except LoginRefused as exc:
            raise refusal_response(request, exc) from exc
        self._attach(request, sociallogin, user)

    @staticmethod
    def _attach(request: HttpRequest, sociallogin: SocialLogin, user: User) -> None:
        """Point allauth's SocialAccount row at the user we chose, creating it if needed."""
        if sociallogin.is_existing:
            if sociallogin.account.user_id != user.pk:
                sociallogin.account.user = user
                sociallogin.account.save(update_fields=["user"])
            sociallogin.user = user
        else:
            sociallogin.connect(request, user)

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return False

    def get_connect_redirect_url(self, request: HttpRequest, socialaccount: Any) -> str:
        return reverse("account_profile")
