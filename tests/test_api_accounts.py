"""The accounts API: users and invitations (ADMIN only), in the API's one error shape."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import pytest

from accounts_app.models import ApiToken, Invitation, Role, User
from accounts_app.services import invitation_create, invitation_find_valid, token_issue
from tests.helpers_accounts import bearer, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.helpers_accounts_urls")]


@pytest.fixture
def root() -> User:
    return make_user("root", role=Role.ADMIN, email="root@example.com")


@pytest.fixture
def auth(root) -> dict[str, str]:
    _, token = token_issue(user=root, days=1)
    return bearer(token)


def patch(client, url: str, data: dict, auth: dict):
    return client.patch(url, data, content_type="application/json", **auth)


def test_it_lists_users_without_provider_ids(client, auth):
    make_user("bob", role=Role.WRITE, github_id="123", avatar_url="https://a.example/b.png")

    response = client.get("/api/users/", **auth)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    bob = next(u for u in body["results"] if u["username"] == "bob")
    assert bob["role"] == "WRITE" and bob["github_linked"] is True and bob["google_linked"] is False
    assert "github_id" not in bob and "password" not in bob


@pytest.mark.parametrize("role", [Role.READONLY, Role.WRITE])
def test_it_hides_users_and_invitations_from_non_admins(client, role):
    user = make_user("someone", role=role)
    _, token = token_issue(user=user, days=1)
    for method, url in (
        ("get", "/api/users/"),
        ("patch", f"/api/users/{user.pk}/"),
        ("get", "/api/invitations/"),
        ("post", "/api/invitations/"),
        ("delete", f"/api/invitations/{uuid.uuid4()}/"),
    ):
        response = getattr(client, method)(
            url, {}, content_type="application/json", **bearer(token)
        )
        assert response.status_code == 403, (method, url)
        assert response.json()["error"] == "permission_denied"
    assert client.get("/api/users/").status_code == 401


def test_it_changes_role_and_blocks(client, auth):
    bob = make_user("bob", role=Role.READONLY)
    token_issue(user=bob, days=1)

    promoted = patch(client, f"/api/users/{bob.pk}/", {"role": "WRITE"}, auth)
    blocked = patch(client, f"/api/users/{bob.pk}/", {"blocked": True}, auth)

    assert promoted.status_code == 200 and promoted.json()["role"] == "WRITE"
    assert blocked.status_code == 200 and blocked.json()["blocked"] is True
    assert not ApiToken.objects.filter(user=bob).exists()
    unblocked = patch(client, f"/api/users/{bob.pk}/", {"blocked": False}, auth)
    assert unblocked.json()["blocked"] is False


def test_it_refuses_leaving_no_admin_with_409(client, root, auth):
    response = patch(client, f"/api/users/{root.pk}/", {"role": "READONLY"}, auth)

    assert response.status_code == 409
    assert response.json()["error"] == "last_admin"
    assert User.objects.get(id=root.id).role == Role.ADMIN


def test_it_refuses_self_block_with_a_field_error(client, root, auth):
    make_user("deputy", role=Role.ADMIN)

    response = patch(client, f"/api/users/{root.pk}/", {"blocked": True}, auth)

    assert response.status_code == 400
    assert response.json()["fields"] == {"blocked": "You cannot block yourself."}
    assert not User.objects.get(id=root.id).blocked


def test_it_validates_user_changes(client, auth):
    bob = make_user("bob")
    bad = patch(client, f"/api/users/{bob.pk}/", {"role": "GOD", "blocked": "maybe"}, auth)
    missing = patch(client, f"/api/users/{uuid.uuid4()}/", {"role": "WRITE"}, auth)

    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"role", "blocked"}
    assert missing.status_code == 404
    assert User.objects.get(id=bob.id).role == Role.READONLY


def test_it_creates_an_invitation_and_returns_the_link_once(client, root, auth):
    response = client.post(
        "/api/invitations/",
        {"email": "new@example.com", "role": "WRITE", "days": 2},
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 201
    body = response.json()
    token = parse_qs(urlparse(body["link"]).query)["token"][0]
    invitation = invitation_find_valid(token=token)
    assert invitation is not None and str(invitation.id) == body["id"]
    assert body["status"] == "valid" and body["created_by"] == "root" and body["role"] == "WRITE"

    listing = client.get("/api/invitations/", **auth).json()["results"]
    assert [i["id"] for i in listing] == [body["id"]]
    assert "link" not in listing[0] and "token" not in listing[0]
    assert token not in str(listing)


def test_it_defaults_invitations_to_readonly_for_seven_days(client, auth):
    response = client.post(
        "/api/invitations/", {"email": "d@example.com"}, content_type="application/json", **auth
    )
    invitation = Invitation.objects.get()
    assert response.status_code == 201
    assert invitation.role == Role.READONLY
    assert (invitation.expires_at - invitation.created_at).days in {6, 7}


def test_it_validates_invitations(client, auth):
    make_user("taken", email="taken@example.com")
    bad = client.post(
        "/api/invitations/",
        {"email": "nope", "role": "GOD", "days": 0},
        content_type="application/json",
        **auth,
    )
    taken = client.post(
        "/api/invitations/", {"email": "taken@example.com"}, content_type="application/json", **auth
    )

    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"email", "role", "days"}
    assert taken.status_code == 400
    assert taken.json()["fields"] == {"email": "A user with this email already exists."}
    assert not Invitation.objects.exists()


def test_it_revokes_an_invitation(client, root, auth):
    invitation, _ = invitation_create(email="p@example.com", role=Role.READONLY, created_by=root)

    assert client.delete(f"/api/invitations/{invitation.id}/", **auth).status_code == 204
    assert not Invitation.objects.exists()
    assert client.delete(f"/api/invitations/{invitation.id}/", **auth).status_code == 404
