"""Login-link and invitation tokens never reach a log line, also for refused requests."""

from __future__ import annotations

import logging

import pytest

from accounts_app.logfilters import redact
from accounts_app.login_links import login_link_token
from accounts_app.models import Role, User
from accounts_app.services import invitation_create
from tests.helpers_accounts import make_user

pytestmark = pytest.mark.django_db


def test_a_refused_login_link_is_logged_without_its_token(client, caplog):
    bob = make_user("bob", role=Role.WRITE)
    token = login_link_token(user=bob)
    # Blocked now, unblocked within 15 minutes: the same link would work again.
    User.objects.filter(id=bob.id).update(blocked=True)

    with caplog.at_level(logging.INFO):
        assert client.get(f"/login-link/{token}").status_code == 400

    assert "Bad Request: /login-link/[redacted]" in caplog.text
    assert token not in caplog.text


def test_a_rate_limited_login_link_is_logged_without_its_token(client, caplog, settings):
    settings.FASTFLOW_AUTH_RATE_LIMIT_COUNT = 1
    bob = make_user("bob", role=Role.WRITE)
    client.get("/login-link/spent")
    token = login_link_token(user=bob)

    with caplog.at_level(logging.INFO):
        assert client.get(f"/login-link/{token}").status_code == 429

    assert token not in caplog.text


def test_the_development_server_request_line_hides_invitation_and_link_tokens(caplog):
    root = make_user("root", role=Role.ADMIN)
    _, link = invitation_create(email="p@example.com", role=Role.WRITE, created_by=root)
    raw = link.partition("token=")[2]

    with caplog.at_level(logging.INFO, logger="django.server"):
        logging.getLogger("django.server").info(
            '"%s" %s %s', f"GET /invite?token={raw}&x=1 HTTP/1.1", "302", "0"
        )
        logging.getLogger("django.server").info(
            '"%s" %s %s', "GET /login-link/abc:def:ghi HTTP/1.1", "400", "12"
        )

    assert raw not in caplog.text
    assert '"GET /invite?token=[redacted]&x=1 HTTP/1.1" 302 0' in caplog.text
    assert '"GET /login-link/[redacted] HTTP/1.1" 400 12' in caplog.text


def test_redact_leaves_other_text_alone():
    assert redact("GET /admin/pipelines_app/pipeline/?q=token HTTP/1.1") == (
        "GET /admin/pipelines_app/pipeline/?q=token HTTP/1.1"
    )


def test_a_refused_webhook_call_is_logged_without_its_key(client, caplog):
    from tests.helpers_api import make_pipeline

    key = "the-real-webhook-key-0123"
    make_pipeline("etl", {"webhook_key": key}, enabled=False)

    with caplog.at_level(logging.INFO):
        assert client.post(f"/webhooks/etl/{key}").status_code == 409
        assert client.post("/webhooks/etl/a-guessed-key/").status_code == 404

    assert "Conflict: /webhooks/etl/[redacted]" in caplog.text
    assert "Not Found: /webhooks/etl/[redacted]/" in caplog.text
    assert key not in caplog.text and "a-guessed-key" not in caplog.text
