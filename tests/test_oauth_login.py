"""End-to-end GitHub/Google login through allauth, with the providers faked at the HTTP edge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts_app.models import Invitation, Role, User
from accounts_app.services import invitation_create
from tests.helpers_accounts import (
    FakeProviders,
    GitHubUser,
    GoogleUser,
    github_login,
    google_login,
    logged_in_user,
    make_user,
    oauth_providers,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("oauth_providers")]


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders()


def open_invitation(client: Client, link: str):
    path = link.split("://", 1)[1].partition("/")[2]
    return client.get("/" + path)


def test_it_offers_exactly_the_configured_providers(client, settings):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"Sign in with GitHub" in page.content
    assert b"Sign in with Google" in page.content
    assert b"password" not in page.content.lower()

    settings.SOCIALACCOUNT_PROVIDERS = {"github": settings.SOCIALACCOUNT_PROVIDERS["github"]}
    page = client.get("/accounts/login/")
    assert b"Sign in with GitHub" in page.content
    assert b"Sign in with Google" not in page.content


def test_it_explains_how_to_get_in_when_no_provider_is_configured(client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {}
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"No login provider is configured" in page.content
    assert b"createadmin" in page.content


def test_it_refuses_password_logins(client):
    make_user("alice", email="alice@example.com")
    response = client.post("/accounts/login/", {"login": "alice", "password": "x"})
    assert logged_in_user(client) is None
    assert response.status_code in {302, 400, 403, 405}


def test_it_redirects_the_admin_login_to_the_provider_login(client):
    response = client.get("/admin/login/?next=/admin/runs_app/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2Fruns_app%2F"

    response = client.get("/admin/")
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert follow.status_code == 302
    assert follow["Location"].startswith("/accounts/login/")


def test_it_drops_an_offsite_next_on_the_admin_login_redirect(client):
    response = client.get("/admin/login/?next=https://evil.example/")
    assert response["Location"] == "/accounts/login/"


def test_it_keeps_the_confirmation_step_for_get_requests(client):
    response = client.get("/accounts/github/login/")
    assert response.status_code == 200
    assert b'method="post"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


def test_it_creates_a_user_from_an_invitation(client, fake):
    admin = make_user("root", role=Role.ADMIN)
    invitation, link = invitation_create(
        email="New.Person@Example.com", role=Role.WRITE, created_by=admin
    )
    assert open_invitation(client, link).status_code == 302

    response = github_login(
        client,
        fake,
        GitHubUser(uid=4242, login="newperson", emails=[("new.person@example.com", True, True)]),
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    user = User.objects.get(github_id="4242")
    assert user.username == "newperson"
    assert user.role == Role.WRITE
    assert user.email == "New.Person@Example.com"
    assert user.avatar_url == "https://avatars.example/u/1"
    assert logged_in_user(client) == user
    invitation.refresh_from_db()
    assert invitation.is_used and invitation.used_by == user and invitation.used_at is not None
    assert ("POST", "https://github.com/login/oauth/access_token") in fake.calls


def test_it_refuses_a_used_invitation(client, fake):
    admin = make_user("root", role=Role.ADMIN)
    _, link = invitation_create(email="p@example.com", role=Role.READONLY, created_by=admin)
    slow, fast = Client(), Client()
    # Both open the link; the second finishes the provider login first.
    assert open_invitation(slow, link).status_code == 302
    assert open_invitation(fast, link).status_code == 302
    github_login(
        fast, fake, GitHubUser(uid=1, login="first", emails=[("p@example.com", True, True)])
    )

    response = github_login(
        slow, fake, GitHubUser(uid=2, login="second", emails=[("p@example.com", True, True)])
    )

    assert response.status_code == 403
    assert b"not valid" in response.content
    assert not User.objects.filter(github_id="2").exists()
    assert logged_in_user(slow) is None
    assert open_invitation(Client(), link).status_code == 400


def test_it_refuses_an_expired_invitation(client, fake):
    admin = make_user("root", role=Role.ADMIN)
    invitation, link = invitation_create(email="p@example.com", role=Role.WRITE, created_by=admin)
    assert open_invitation(client, link).status_code == 302
    Invitation.objects.filter(id=invitation.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = github_login(
        client, fake, GitHubUser(uid=7, login="late", emails=[("p@example.com", True, True)])
    )

    assert response.status_code == 403
    assert not User.objects.filter(github_id="7").exists()
    page = open_invitation(Client(), link)
    assert page.status_code == 400
    assert b"not valid" in page.content


def test_it_refuses_an_invitation_for_another_email(client, fake):
    admin = make_user("root", role=Role.ADMIN)
    invitation, link = invitation_create(
        email="right@example.com", role=Role.WRITE, created_by=admin
    )
    open_invitation(client, link)

    response = google_login(client, fake, GoogleUser(sub="g-1", email="wrong@example.com"))

    assert response.status_code == 403
    assert not User.objects.filter(google_id="g-1").exists()
    invitation.refresh_from_db()
    assert not invitation.is_used


def test_it_refuses_an_invitation_matched_only_by_an_unverified_email(client, fake):
    # Anyone can add any address to a GitHub account unverified: a leaked link plus the
    # recipient's address added that way must not create an account.
    admin = make_user("root", role=Role.ADMIN)
    invitation, link = invitation_create(
        email="invitee@example.com", role=Role.WRITE, created_by=admin
    )
    open_invitation(client, link)

    response = github_login(
        client,
        fake,
        GitHubUser(
            uid=4343,
            login="mallory",
            emails=[("mallory@example.com", True, True), ("invitee@example.com", False, False)],
        ),
    )

    assert response.status_code == 403
    assert not User.objects.filter(github_id="4343").exists()
    invitation.refresh_from_db()
    assert not invitation.is_used


def test_it_refuses_strangers_without_telling_them_who_exists(client, fake):
    make_user("alice", email="alice@example.com")
    response = github_login(
        client,
        fake,
        GitHubUser(uid=9, login="stranger", emails=[("alice@example.com", False, True)]),
    )
    stranger = github_login(
        Client(),
        fake,
        GitHubUser(uid=10, login="other", emails=[("nobody@example.com", True, True)]),
    )
    assert response.status_code == stranger.status_code == 403
    assert b"Ask an admin for an invitation" in response.content
    assert response.content == stranger.content


def test_it_links_an_existing_user_by_verified_email(client, fake):
    alice = make_user("alice", email="Alice@Example.com", role=Role.WRITE)

    response = github_login(
        client,
        fake,
        GitHubUser(
            uid=555,
            login="alice-gh",
            emails=[("alice@private.example", True, True), ("alice@example.com", True, False)],
        ),
    )

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.github_id == "555"
    assert alice.role == Role.WRITE
    assert logged_in_user(client) == alice
    assert User.objects.count() == 1


def test_it_does_not_link_by_unverified_email(client, fake):
    alice = make_user("alice", email="alice@example.com")

    response = github_login(
        client,
        fake,
        GitHubUser(uid=556, login="mallory", emails=[("alice@example.com", False, True)]),
    )

    assert response.status_code == 403
    alice.refresh_from_db()
    assert alice.github_id is None
    assert logged_in_user(client) is None


def test_it_creates_the_initial_admin_from_a_verified_email(client, fake, settings):
    settings.FASTFLOW_INITIAL_ADMIN_EMAIL = "boss@example.com"

    response = google_login(client, fake, GoogleUser(sub="g-boss", email="Boss@example.com"))

    assert response.status_code == 302
    boss = User.objects.get(google_id="g-boss")
    assert boss.role == Role.ADMIN
    assert boss.username == "Boss"
    assert logged_in_user(client) == boss
    assert client.get("/admin/accounts_app/user/").status_code == 200
    exchange = fake.token_requests["https://oauth2.googleapis.com/token"]
    assert exchange["code"] == "the-code" and exchange["code_verifier"]  # PKCE is on


def test_it_ignores_the_initial_admin_email_when_unverified(client, fake, settings):
    settings.FASTFLOW_INITIAL_ADMIN_EMAIL = "boss@example.com"

    response = google_login(
        client, fake, GoogleUser(sub="g-fake", email="boss@example.com", email_verified=False)
    )

    assert response.status_code == 403
    assert not User.objects.exists()


def test_it_ignores_the_initial_admin_email_once_an_admin_exists(client, fake, settings):
    make_user("root", role=Role.ADMIN)
    settings.FASTFLOW_INITIAL_ADMIN_EMAIL = "boss@example.com"

    response = google_login(client, fake, GoogleUser(sub="g-late", email="boss@example.com"))

    assert response.status_code == 403
    assert not User.objects.filter(google_id="g-late").exists()


def test_it_logs_in_a_returning_user_by_provider_id_and_refreshes_the_avatar(client, fake):
    bob = make_user("bob", github_id="77", avatar_url="https://old.example/a.png")

    response = github_login(
        client,
        fake,
        GitHubUser(uid=77, login="bob", emails=[], avatar_url="https://new.example/b.png"),
    )

    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.avatar_url == "https://new.example/b.png"
    assert logged_in_user(client) == bob


def test_it_refuses_a_blocked_user(client, fake):
    make_user("bob", github_id="78", email="bob@example.com", blocked=True)

    by_id = github_login(client, fake, GitHubUser(uid=78, login="bob"))
    by_email = google_login(Client(), fake, GoogleUser(sub="g-bob", email="bob@example.com"))

    assert by_id.status_code == 403
    assert b"blocked" in by_id.content
    assert by_email.status_code == 403
    assert logged_in_user(client) is None
    assert User.objects.get(username="bob").google_id is None


def test_it_links_a_second_provider_to_the_logged_in_user(client, fake):
    carol = make_user("carol", github_id="900", email="carol@example.com")
    github_login(client, fake, GitHubUser(uid=900, login="carol"))
    assert logged_in_user(client) == carol

    response = google_login(
        client,
        fake,
        GoogleUser(sub="g-carol", email="carol.other@gmail.example"),
        process="connect",
    )

    assert response.status_code == 302
    assert response["Location"] == "/account/"
    carol.refresh_from_db()
    assert carol.google_id == "g-carol"
    assert carol.github_id == "900"

    other = Client()
    google_login(other, fake, GoogleUser(sub="g-carol", email="carol.other@gmail.example"))
    assert logged_in_user(other) == carol


def test_it_refuses_linking_a_provider_account_that_belongs_to_someone_else(client, fake):
    make_user("dave", google_id="g-dave")
    erin = make_user("erin", github_id="901")
    github_login(client, fake, GitHubUser(uid=901, login="erin"))

    response = google_login(
        client, fake, GoogleUser(sub="g-dave", email="dave@example.com"), process="connect"
    )

    assert response.status_code == 403
    assert b"already linked to another" in response.content
    erin.refresh_from_db()
    assert erin.google_id is None


def test_it_derives_a_unique_username(client, fake):
    make_user("octocat")
    admin = make_user("root", role=Role.ADMIN)
    _, link = invitation_create(email="cat@example.com", role=Role.READONLY, created_by=admin)
    open_invitation(client, link)

    github_login(
        client, fake, GitHubUser(uid=3, login="octocat", emails=[("cat@example.com", True, True)])
    )

    assert User.objects.get(github_id="3").username == "octocat-2"


def test_it_rejects_a_callback_with_a_forged_state(client, fake):
    make_user("bob", github_id="78")
    client.post("/accounts/github/login/")
    fake.github_user = GitHubUser(uid=78, login="bob")
    with fake.installed():
        response = client.get(
            "/accounts/github/login/callback/", {"code": "c", "state": "forged-state"}
        )
    assert response.status_code == 401
    assert b"did not work" in response.content
    assert logged_in_user(client) is None
    assert fake.calls == []
