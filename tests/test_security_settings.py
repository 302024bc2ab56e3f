"""Security details: cookie flags in production, CSRF on every form a browser session can post."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts_app.models import ApiToken, Invitation, Role
from tests.helpers_accounts import make_user
from tests.helpers_settings import production_env, run_django

SHOW_COOKIE_FLAGS = (
    "import json\n"
    "print(json.dumps({k: getattr(settings, k) for k in ("
    "'SESSION_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE', "
    "'CSRF_COOKIE_SECURE', 'CSRF_COOKIE_SAMESITE')}))"
)


def test_production_cookies_are_secure_httponly_and_samesite_lax(tmp_path):
    result = run_django(tmp_path, SHOW_COOKIE_FLAGS, **production_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
    }


def test_development_over_http_keeps_cookies_usable(tmp_path):
    result = run_django(tmp_path, SHOW_COOKIE_FLAGS, DEBUG="true")
    assert result.returncode == 0, result.stderr
    flags = json.loads(result.stdout)
    assert flags["SESSION_COOKIE_SECURE"] is False
    assert flags["SESSION_COOKIE_HTTPONLY"] is True
    assert flags["SESSION_COOKIE_SAMESITE"] == "Lax"


@pytest.fixture
def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.mark.django_db
def test_the_account_page_forms_need_a_csrf_token(csrf_client):
    reader = make_user("reader", role=Role.READONLY)
    csrf_client.force_login(reader)

    assert csrf_client.post("/account/tokens/", {"name": "x", "days": 1}).status_code == 403
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_revoking_a_token_on_the_account_page_needs_a_csrf_token(csrf_client):
    from accounts_app.services import token_issue

    reader = make_user("reader", role=Role.READONLY)
    session, _ = token_issue(user=reader, days=1)
    csrf_client.force_login(reader)

    assert csrf_client.post(f"/account/tokens/{session.id}/revoke/").status_code == 403
    assert ApiToken.objects.filter(id=session.id).exists()


@pytest.mark.django_db
def test_admin_forms_need_a_csrf_token(csrf_client):
    admin = make_user("root", role=Role.ADMIN)
    csrf_client.force_login(admin)

    response = csrf_client.post(
        "/admin/accounts_app/invitation/add/",
        {"recipient_email": "x@example.com", "role": Role.WRITE, "days": 7},
    )

    assert response.status_code == 403
    assert not Invitation.objects.exists()


@pytest.mark.django_db
def test_the_api_with_a_browser_session_needs_a_csrf_token(csrf_client):
    reader = make_user("reader", role=Role.READONLY)
    csrf_client.force_login(reader)

    response = csrf_client.post(
        "/api/tokens/", {"name": "x", "days": 1}, content_type="application/json"
    )

    assert response.status_code == 403
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_logout_needs_a_post_with_a_csrf_token(csrf_client):
    reader = make_user("reader", role=Role.READONLY)
    csrf_client.force_login(reader)

    csrf_client.get("/accounts/logout/")
    assert "_auth_user_id" in csrf_client.session
    assert csrf_client.post("/accounts/logout/").status_code == 403
    assert "_auth_user_id" in csrf_client.session
