"""Invitations: creation, the /invite link, single-use redemption, the admin page, rate limits."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import close_old_connections
from django.utils import timezone

from accounts_app.adapters import INVITATION_SESSION_KEY
from accounts_app.errors import InvalidInput, InvitationInvalid
from accounts_app.models import Invitation, Role, User
from accounts_app.services import invitation_create, invitation_find_valid, invitation_redeem
from tests.helpers_accounts import make_user

pytestmark = pytest.mark.django_db


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["token"][0]


@pytest.fixture
def admin_user() -> User:
    return make_user("root", role=Role.ADMIN)


def test_it_stores_only_the_hash_and_returns_the_link(admin_user, settings):
    settings.FASTFLOW_BASE_URL = "https://flow.example"
    invitation, link = invitation_create(
        email="p@example.com", role=Role.WRITE, created_by=admin_user
    )

    token = token_of(link)
    assert link.startswith("https://flow.example/invite?token=")
    assert len(token) >= 40
    assert invitation.token == hashlib.sha256(token.encode()).hexdigest()
    assert invitation.created_by == admin_user
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    assert invitation_find_valid(token=token) == invitation
    assert invitation_find_valid(token=invitation.token) is None  # the hash is not the token


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"email": "not-an-email", "role": Role.READONLY}, "email"),
        ({"email": "p@example.com", "role": "SUPERUSER"}, "role"),
        ({"email": "p@example.com", "role": Role.READONLY, "days": 0}, "days"),
        ({"email": "p@example.com", "role": Role.READONLY, "days": 366}, "days"),
    ],
)
def test_it_rejects_bad_input_with_the_field_named(admin_user, kwargs, field):
    with pytest.raises(InvalidInput) as exc:
        invitation_create(created_by=admin_user, **kwargs)
    assert field in exc.value.fields
    assert not Invitation.objects.exists()


def test_it_refuses_to_invite_an_existing_users_email(admin_user):
    make_user("alice", email="Alice@example.com")
    with pytest.raises(InvalidInput, match="already exists"):
        invitation_create(email="alice@EXAMPLE.com", role=Role.READONLY, created_by=admin_user)


def test_redeeming_creates_the_user_with_the_role_once(admin_user):
    invitation, link = invitation_create(
        email="p@example.com", role=Role.WRITE, created_by=admin_user
    )

    user = invitation_redeem(
        token=token_of(link), emails=["P@Example.com"], user_fields={"username": "p"}
    )

    assert (user.role, user.email, user.username) == (Role.WRITE, "p@example.com", "p")
    invitation.refresh_from_db()
    assert invitation.is_used and invitation.used_by == user
    with pytest.raises(InvitationInvalid):
        invitation_redeem(
            token=token_of(link), emails=["p@example.com"], user_fields={"username": "q"}
        )
    assert User.objects.filter(email="p@example.com").count() == 1


def test_redeeming_refuses_a_wrong_email_and_keeps_the_invitation(admin_user):
    invitation, link = invitation_create(
        email="p@example.com", role=Role.WRITE, created_by=admin_user
    )
    with pytest.raises(InvitationInvalid):
        invitation_redeem(
            token=token_of(link), emails=["q@example.com"], user_fields={"username": "q"}
        )
    invitation.refresh_from_db()
    assert not invitation.is_used
    assert not User.objects.filter(username="q").exists()


def test_redeeming_refuses_an_expired_invitation(admin_user):
    invitation, link = invitation_create(
        email="p@example.com", role=Role.WRITE, created_by=admin_user
    )
    Invitation.objects.filter(id=invitation.id).update(expires_at=timezone.now())
    with pytest.raises(InvitationInvalid):
        invitation_redeem(
            token=token_of(link), emails=["p@example.com"], user_fields={"username": "p"}
        )


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_redemptions_cannot_both_succeed():
    root = make_user("root", role=Role.ADMIN)
    invitation, link = invitation_create(email="p@example.com", role=Role.WRITE, created_by=root)
    token = token_of(link)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def redeem(name: str) -> None:
        try:
            barrier.wait()
            invitation_redeem(token=token, emails=["p@example.com"], user_fields={"username": name})
            outcomes.append("ok")
        except InvitationInvalid:
            outcomes.append("refused")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=redeem, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(outcomes) == ["ok", "refused"]
    assert User.objects.filter(email="p@example.com").count() == 1
    invitation.refresh_from_db()
    assert invitation.is_used


def test_the_invite_link_remembers_a_valid_invitation_and_goes_to_login(client, admin_user):
    _, link = invitation_create(email="p@example.com", role=Role.WRITE, created_by=admin_user)

    response = client.get("/invite", {"token": token_of(link)})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert client.session[INVITATION_SESSION_KEY] == token_of(link)
    page = client.get("/accounts/login/")
    assert b"You have been invited" in page.content


def test_the_invite_link_refuses_unknown_used_and_expired_tokens_alike(client, admin_user):
    used, used_link = invitation_create(
        email="u@example.com", role=Role.WRITE, created_by=admin_user
    )
    Invitation.objects.filter(id=used.id).update(is_used=True)
    old, old_link = invitation_create(email="o@example.com", role=Role.WRITE, created_by=admin_user)
    Invitation.objects.filter(id=old.id).update(expires_at=timezone.now() - timedelta(days=1))

    pages = [
        client.get("/invite", {"token": token})
        for token in ("made-up", token_of(used_link), token_of(old_link))
    ]
    missing = client.get("/invite")

    assert {p.status_code for p in [*pages, missing]} == {400}
    assert len({p.content for p in pages}) == 1
    assert INVITATION_SESSION_KEY not in client.session


def test_the_invite_link_logs_out_whoever_was_logged_in(client, admin_user):
    _, link = invitation_create(email="p@example.com", role=Role.WRITE, created_by=admin_user)
    client.force_login(admin_user)

    client.get("/invite", {"token": token_of(link)})

    assert "_auth_user_id" not in client.session
    assert client.session[INVITATION_SESSION_KEY] == token_of(link)


def test_the_invite_link_is_rate_limited(client, settings):
    settings.FASTFLOW_AUTH_RATE_LIMIT_COUNT = 3
    statuses = [client.get("/invite", {"token": f"guess-{i}"}).status_code for i in range(5)]
    assert statuses == [400, 400, 400, 429, 429]


def test_the_login_link_is_rate_limited(client, settings):
    settings.FASTFLOW_AUTH_RATE_LIMIT_COUNT = 2
    statuses = [client.get(f"/login-link/guess-{i}").status_code for i in range(3)]
    assert statuses == [400, 400, 429]


def test_the_admin_creates_an_invitation_and_shows_the_link_once(client, admin_user):
    client.force_login(admin_user)

    page = client.post(
        "/admin/accounts_app/invitation/add/",
        {"recipient_email": "new@example.com", "role": Role.WRITE, "days": 3},
    )

    assert page.status_code == 200
    invitation = Invitation.objects.get()
    link = page.context["link"]
    assert link.encode() in page.content
    assert invitation_find_valid(token=token_of(link)) == invitation
    assert invitation.role == Role.WRITE and invitation.created_by == admin_user
    assert timedelta(days=2, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=3)

    listing = client.get("/admin/accounts_app/invitation/")
    detail = client.get(f"/admin/accounts_app/invitation/{invitation.pk}/change/")
    for later in (listing, detail):
        assert later.status_code == 200
        assert token_of(link).encode() not in later.content
        assert invitation.token.encode() not in later.content
    assert b"valid" in listing.content


def test_the_admin_invitation_form_reports_bad_input(client, admin_user):
    client.force_login(admin_user)
    make_user("taken", email="taken@example.com")

    bad_email = client.post(
        "/admin/accounts_app/invitation/add/",
        {"recipient_email": "nope", "role": Role.WRITE, "days": 3},
    )
    taken = client.post(
        "/admin/accounts_app/invitation/add/",
        {"recipient_email": "taken@example.com", "role": Role.WRITE, "days": 3},
    )

    assert bad_email.status_code == taken.status_code == 400
    assert b"already exists" in taken.content
    assert not Invitation.objects.exists()


def test_the_admin_lists_invitation_status(client, admin_user):
    client.force_login(admin_user)
    valid, _ = invitation_create(email="v@example.com", role=Role.READONLY, created_by=admin_user)
    used, _ = invitation_create(email="u@example.com", role=Role.READONLY, created_by=admin_user)
    expired, _ = invitation_create(email="e@example.com", role=Role.READONLY, created_by=admin_user)
    Invitation.objects.filter(id=used.id).update(is_used=True)
    Invitation.objects.filter(id=expired.id).update(expires_at=timezone.now() - timedelta(days=1))

    for status, email in (
        ("valid", b"v@example.com"),
        ("used", b"u@example.com"),
        ("expired", b"e@example.com"),
    ):
        page = client.get("/admin/accounts_app/invitation/", {"status": status})
        assert page.status_code == 200
        assert email in page.content
        assert len(page.context["cl"].result_list) == 1


def test_non_admins_cannot_create_invitations_in_the_admin(client):
    writer = make_user("writer", role=Role.WRITE)
    client.force_login(writer)
    response = client.post(
        "/admin/accounts_app/invitation/add/",
        {"recipient_email": "x@example.com", "role": Role.ADMIN, "days": 3},
    )
    assert response.status_code == 403
    assert not Invitation.objects.exists()
