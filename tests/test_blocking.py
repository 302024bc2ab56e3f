"""Blocking and roles: what a block revokes, and the last-ADMIN guard in services and admin."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections

from accounts_app.errors import InvalidInput, LastAdminError
from accounts_app.login_links import login_link_token
from accounts_app.models import ApiToken, Role, User
from accounts_app.services import token_issue, user_block, user_set_role, user_unblock, user_update
from tests.helpers_accounts import bearer, make_user

pytestmark = pytest.mark.django_db


def test_blocking_revokes_every_token_and_the_browser_session(client):
    root = make_user("root", role=Role.ADMIN)
    bob = make_user("bob", role=Role.WRITE)
    token_issue(user=bob, days=1)
    token_issue(user=bob, days=30)
    root_session, _ = token_issue(user=root, days=1)
    client.force_login(bob)
    assert client.get("/admin/").status_code == 200

    revoked = user_block(user=bob, actor=root)

    assert revoked == 2
    assert list(ApiToken.objects.values_list("id", flat=True)) == [root_session.id]
    assert User.objects.get(id=bob.id).blocked
    after = client.get("/admin/")
    assert after.status_code == 302
    assert client.get("/account/").status_code == 302


def test_blocking_ends_a_browser_session_started_through_the_oauth_backend(client):
    # OAuth logins record allauth's backend in the session, not RoleBackend: it must refuse a
    # blocked user on the very next request as well.
    root = make_user("root", role=Role.ADMIN)
    bob = make_user("bob", role=Role.WRITE)
    client.force_login(bob, backend="allauth.account.auth_backends.AuthenticationBackend")
    assert client.get("/admin/").status_code == 200

    user_block(user=bob, actor=root)

    assert client.get("/admin/").status_code == 302
    assert client.get("/account/").status_code == 302


@pytest.mark.urls("tests.helpers_accounts_urls")
def test_a_blocked_users_api_session_stops_working(client):
    bob = make_user("bob", role=Role.WRITE)
    make_user("root", role=Role.ADMIN)
    _, token = token_issue(user=bob, days=1)
    client.force_login(bob)
    assert client.get("/api/tokens/").status_code == 200

    User.objects.filter(id=bob.id).update(blocked=True)

    assert client.get("/api/tokens/").status_code in {401, 403}
    assert client.get("/api/tokens/", **bearer(token)).status_code == 401


def test_a_blocked_user_cannot_use_a_login_link(client):
    bob = make_user("bob", role=Role.WRITE)
    token = login_link_token(user=bob)
    User.objects.filter(id=bob.id).update(blocked=True)

    response = client.get(f"/login-link/{token}")

    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


def test_unblocking_lets_the_user_back_in_without_reviving_tokens(client):
    root = make_user("root", role=Role.ADMIN)
    bob = make_user("bob", role=Role.WRITE)
    token_issue(user=bob, days=1)
    user_block(user=bob, actor=root)

    user_unblock(user=bob)

    client.force_login(User.objects.get(id=bob.id))
    assert client.get("/admin/").status_code == 200
    assert not ApiToken.objects.filter(user=bob).exists()


def test_unblocking_does_not_revive_a_browser_session_opened_before_the_block(client):
    root = make_user("root", role=Role.ADMIN)
    bob = make_user("bob", role=Role.WRITE)
    client.force_login(bob)
    assert client.get("/admin/").status_code == 200

    user_block(user=bob, actor=root)
    user_unblock(user=User.objects.get(id=bob.id))

    assert client.get("/admin/").status_code == 302
    assert "_auth_user_id" not in client.session
    assert not User.objects.get(id=bob.id).has_usable_password()


def test_nobody_can_block_themselves():
    root = make_user("root", role=Role.ADMIN)
    make_user("other-admin", role=Role.ADMIN)
    with pytest.raises(InvalidInput, match="cannot block yourself"):
        user_block(user=root, actor=root)
    assert not User.objects.get(id=root.id).blocked


def test_the_last_admin_cannot_be_blocked_or_demoted():
    root = make_user("root", role=Role.ADMIN)
    make_user("blocked-admin", role=Role.ADMIN, blocked=True)
    writer = make_user("writer", role=Role.WRITE)

    with pytest.raises(LastAdminError):
        user_block(user=root, actor=writer)
    with pytest.raises(LastAdminError):
        user_set_role(user=root, role=Role.WRITE)
    with pytest.raises(LastAdminError):
        user_update(user=root, actor=root, role=Role.READONLY)

    root.refresh_from_db()
    assert root.role == Role.ADMIN and not root.blocked


def test_an_admin_can_step_down_when_another_admin_exists():
    root = make_user("root", role=Role.ADMIN)
    make_user("deputy", role=Role.ADMIN)

    user_update(user=root, actor=root, role=Role.WRITE)

    assert User.objects.get(id=root.id).role == Role.WRITE


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin():
    a = make_user("a", role=Role.ADMIN)
    b = make_user("b", role=Role.ADMIN)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(target: User) -> None:
        try:
            barrier.wait()
            user_set_role(user=User.objects.get(id=target.id), role=Role.READONLY)
            outcomes.append("ok")
        except LastAdminError:
            outcomes.append("refused")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=demote, args=(u,)) for u in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(outcomes) == ["ok", "refused"]
    assert User.objects.filter(role=Role.ADMIN).count() == 1


def test_the_admin_block_action_blocks_and_revokes(client):
    root = make_user("root", role=Role.ADMIN)
    bob = make_user("bob", role=Role.WRITE)
    token_issue(user=bob, days=1)
    client.force_login(root)

    response = client.post(
        "/admin/accounts_app/user/",
        {"action": "block_users", "_selected_action": [str(bob.pk), str(root.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert User.objects.get(id=bob.id).blocked
    assert not User.objects.get(id=root.id).blocked
    assert not ApiToken.objects.filter(user=bob).exists()
    text = response.content.decode()
    assert "1 user(s) blocked" in text
    assert "cannot block yourself" in text


def test_the_admin_change_form_refuses_demoting_the_last_admin(client):
    root = make_user("root", role=Role.ADMIN, email="root@example.com")
    client.force_login(root)

    response = client.post(
        f"/admin/accounts_app/user/{root.pk}/change/",
        {"email": "root@example.com", "role": Role.READONLY},
    )

    assert response.status_code == 200
    assert b"last ADMIN" in response.content
    assert User.objects.get(id=root.id).role == Role.ADMIN


def test_the_admin_change_form_applies_role_email_and_block(client):
    root = make_user("root", role=Role.ADMIN)
    bob = make_user("bob", role=Role.READONLY, email="bob@old.example")
    token_issue(user=bob, days=1)
    client.force_login(root)

    response = client.post(
        f"/admin/accounts_app/user/{bob.pk}/change/",
        {"email": "bob@new.example", "role": Role.WRITE, "blocked": "on"},
    )

    assert response.status_code == 302
    bob.refresh_from_db()
    assert (bob.email, bob.role, bob.blocked) == ("bob@new.example", Role.WRITE, True)
    assert not ApiToken.objects.filter(user=bob).exists()


def test_the_user_admin_has_no_add_page_and_no_self_delete(client):
    root = make_user("root", role=Role.ADMIN)
    client.force_login(root)
    assert client.get("/admin/accounts_app/user/add/").status_code == 403
    assert client.get(f"/admin/accounts_app/user/{root.pk}/delete/").status_code == 403
