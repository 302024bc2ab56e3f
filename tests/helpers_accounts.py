"""Shared helpers for the accounts tests: users, tokens and a fake GitHub/Google at the HTTP edge.

The OAuth flow runs for real through allauth (state, callback, token exchange, profile parsing);
only `requests.Session.request`, the one door allauth uses to reach the providers, is replaced by
`FakeProviders`, which answers like GitHub and Google do.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from accounts_app.models import Role, User

GITHUB_CLIENT_ID = "gh-client-id"
GOOGLE_CLIENT_ID = "google-client-id.apps.googleusercontent.com"


@pytest.fixture
def oauth_providers(settings) -> None:
    """Configure GitHub and Google the way settings.py does from FASTFLOW_* env vars."""
    settings.SOCIALACCOUNT_PROVIDERS = {
        "github": {
            "APPS": [{"client_id": GITHUB_CLIENT_ID, "secret": "gh-secret"}],
            "SCOPE": ["read:user", "user:email"],
        },
        "google": {
            "APPS": [{"client_id": GOOGLE_CLIENT_ID, "secret": "google-secret"}],
            "SCOPE": ["openid", "email", "profile"],
            "OAUTH_PKCE_ENABLED": True,
        },
    }
    settings.FASTFLOW_INITIAL_ADMIN_EMAIL = ""


def make_user(username: str, *, role: str = Role.READONLY, **fields: Any) -> User:
    return User.objects.create_user(username=username, role=role, **fields)


def _response(url: str, status: int, payload: Any) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.url = url
    resp._content = json.dumps(payload).encode()
    resp.headers["Content-Type"] = "application/json"
    return resp


@dataclass
class GitHubUser:
    uid: int
    login: str
    emails: list[tuple[str, bool, bool]] = field(default_factory=list)  # (email, verified, primary)
    avatar_url: str = "https://avatars.example/u/1"


@dataclass
class GoogleUser:
    sub: str
    email: str
    email_verified: bool = True
    picture: str = "https://lh3.example/photo.jpg"


class FakeProviders:
    """Stands in for github.com, api.github.com and Google's token endpoint."""

    def __init__(self) -> None:
        self.github_user: GitHubUser | None = None
        self.google_user: GoogleUser | None = None
        self.calls: list[tuple[str, str]] = []
        self.token_requests: dict[str, dict] = {}  # token endpoint URL → form data sent
        self._google_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def _google_id_token(self) -> str:
        assert self.google_user is not None
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": GOOGLE_CLIENT_ID,
            "sub": self.google_user.sub,
            "email": self.google_user.email,
            "email_verified": self.google_user.email_verified,
            "name": "Test Person",
            "picture": self.google_user.picture,
            "iat": now,
            "exp": now + 600,
        }
        return jwt.encode(claims, self._google_key, algorithm="RS256", headers={"kid": "k1"})

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append((method.upper(), url))
        if url.endswith(("/access_token", "/token")):
            self.token_requests[url] = dict(kwargs.get("data") or {})
        gh = self.github_user
        if url == "https://github.com/login/oauth/access_token":
            return _response(url, 200, {"access_token": "gh-access", "token_type": "bearer"})
        if url == "https://api.github.com/user" and gh:
            return _response(
                url,
                200,
                {"id": gh.uid, "login": gh.login, "name": gh.login, "avatar_url": gh.avatar_url},
            )
        if url == "https://api.github.com/user/emails" and gh:
            emails = [{"email": e, "verified": v, "primary": p} for e, v, p in gh.emails]
            return _response(url, 200, emails)
        if url == "https://oauth2.googleapis.com/token" and self.google_user:
            return _response(
                url,
                200,
                {
                    "access_token": "google-access",
                    "expires_in": 3599,
                    "token_type": "Bearer",
                    "id_token": self._google_id_token(),
                },
            )
        return _response(url, 404, {"message": "Not Found"})

    @contextmanager
    def installed(self):
        fake = self

        def request(session: requests.Session, method: str, url: str, **kwargs: Any):
            return fake.request(method, url, **kwargs)

        with mock.patch.object(requests.Session, "request", request):
            yield self


def _state_from_redirect(location: str) -> str:
    query = parse_qs(urlparse(location).query)
    return query["state"][0]


def oauth_login(client: Client, provider: str, fake: FakeProviders, *, process: str = "login"):
    """Drive allauth's login for `provider` the way a browser would; returns the final response.

    POST the login URL (CSRF-protected confirm step), follow to the provider's authorize URL,
    and come back to the callback with the `state` allauth generated.
    """
    start = client.post(f"/accounts/{provider}/login/?process={process}")
    assert start.status_code == 302, start.content
    location = start["Location"]
    state = _state_from_redirect(location)
    with fake.installed():
        return client.get(
            f"/accounts/{provider}/login/callback/", {"code": "the-code", "state": state}
        )


def github_login(client: Client, fake: FakeProviders, user: GitHubUser, **kwargs: Any):
    fake.github_user = user
    return oauth_login(client, "github", fake, **kwargs)


def google_login(client: Client, fake: FakeProviders, user: GoogleUser, **kwargs: Any):
    fake.google_user = user
    return oauth_login(client, "google", fake, **kwargs)


def logged_in_user(client: Client) -> User | None:
    from django.contrib.auth import get_user

    class _Req:
        session = client.session

    user = get_user(_Req())
    return user if user.is_authenticated else None


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
