"""One-time login links from `createadmin` / `loginlink`: signed, single use, 15 minutes."""

from __future__ import annotations

import re
import threading
from io import StringIO
from urllib.parse import urlparse

import pytest
from django.core import signing
from django.core.management import CommandError, call_command
from django.db import close_old_connections
from django.test import Client

from accounts_app.login_links import (
    LOGIN_LINK_MAX_AGE,
    login_link_consume,
    login_link_token,
    login_link_user,
)
from accounts_app.models import Role, User

pytestmark = pytest.mark.django_db

URL_PATTERN = re.compile(r"https?://\S+/login-link/\S+")


def run_command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def link_path(output: str) -> str:
    match = URL_PATTERN.search(output)
    assert match, f"no login URL in {output!r}"
    return urlparse(match.group(0)).path


def logged_in_user_id(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


@pytest.fixture
def shift_clock(monkeypatch):
    """Move the signer's clock forward by `seconds` (signing reads time.time())."""
    real_time = signing.time.time

    def shift(seconds: float) -> None:
        monkeypatch.setattr(signing.time, "time", lambda: real_time() + seconds)

    return shift


def test_createadmin_creates_an_admin_without_a_usable_password():
    output = run_command("createadmin", "alice", "--email", "alice@example.com")
    user = User.objects.get(username="alice")
    assert "Created ADMIN user 'alice'" in output
    assert user.role == Role.ADMIN
    assert user.email == "alice@example.com"
    assert not user.has_usable_password()
    assert not user.blocked


def test_createadmin_promotes_an_existing_user():
    User.objects.create_user(username="bob", role=Role.READONLY)
    output = run_command("createadmin", "bob")
    assert "Promoted ADMIN user 'bob'" in output
    assert User.objects.get(username="bob").role == Role.ADMIN
    assert User.objects.count() == 1


def test_createadmin_finds_an_existing_admin_and_replaces_the_email_given():
    User.objects.create_user(username="dora", role=Role.ADMIN, email="old@example.com")
    output = run_command("createadmin", "dora", "--email", "new@example.com")
    assert "Found ADMIN user 'dora'" in output
    assert User.objects.get(username="dora").email == "new@example.com"
    run_command("createadmin", "dora")  # no --email: the address stays
    assert User.objects.get(username="dora").email == "new@example.com"


def test_createadmin_refuses_a_blocked_user():
    User.objects.create_user(username="mallory", role=Role.WRITE, blocked=True)
    with pytest.raises(CommandError, match="blocked"):
        run_command("createadmin", "mallory")
    assert User.objects.get(username="mallory").role == Role.WRITE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["  "], "username must not be empty"),
        (["x" * 151], "at most 150 characters"),
        (["carol", "--email", "not-an-address"], "--email: 'not-an-address' is not a valid"),
    ],
)
def test_createadmin_rejects_bad_input_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        run_command("createadmin", *args)
    assert not User.objects.exists()


def test_the_printed_link_logs_the_user_into_the_admin(client):
    path = link_path(run_command("createadmin", "alice"))
    response = client.get(path, follow=True)
    assert response.redirect_chain[0][0] == "/admin/"
    assert response.status_code == 200
    assert response.request["PATH_INFO"] == "/admin/"
    assert logged_in_user_id(client) == str(User.objects.get(username="alice").pk)
    assert "alice" in response.content.decode()
    assert User.objects.get(username="alice").last_login is not None


def test_a_link_works_only_once(client):
    path = link_path(run_command("createadmin", "alice"))
    assert client.get(path).status_code == 302

    other = Client()
    response = other.get(path)
    assert response.status_code == 400
    assert "not valid" in response.content.decode()
    assert logged_in_user_id(other) is None


def test_loginlink_prints_a_fresh_link_after_the_old_one_was_used(client):
    first = link_path(run_command("createadmin", "alice"))
    client.get(first)
    second = link_path(run_command("loginlink", "alice"))
    assert second != first
    fresh = Client()
    assert fresh.get(second).status_code == 302
    assert logged_in_user_id(fresh) == str(User.objects.get(username="alice").pk)


def test_logging_in_another_way_spends_outstanding_links(client):
    alice = User.objects.create_user(username="alice", role=Role.ADMIN)
    path = link_path(run_command("loginlink", "alice"))
    Client().force_login(alice, backend="accounts_app.backends.RoleBackend")
    assert client.get(path).status_code == 400


def test_a_link_expires_after_fifteen_minutes(client, shift_clock):
    alice = User.objects.create_user(username="alice", role=Role.ADMIN)
    token = login_link_token(user=alice)
    shift_clock(LOGIN_LINK_MAX_AGE + 1)
    assert client.get(f"/login-link/{token}").status_code == 400
    assert logged_in_user_id(client) is None


def test_a_link_still_works_just_before_expiry(client, shift_clock):
    alice = User.objects.create_user(username="alice", role=Role.ADMIN)
    token = login_link_token(user=alice)
    shift_clock(LOGIN_LINK_MAX_AGE - 5)
    assert client.get(f"/login-link/{token}").status_code == 302
    assert logged_in_user_id(client) == str(alice.pk)


def test_a_link_is_refused_once_the_user_is_blocked(client):
    path = link_path(run_command("createadmin", "alice"))
    User.objects.filter(username="alice").update(blocked=True)
    assert client.get(path).status_code == 400
    assert logged_in_user_id(client) is None


def test_loginlink_refuses_blocked_and_unknown_users():
    User.objects.create_user(username="mallory", role=Role.ADMIN, blocked=True)
    with pytest.raises(CommandError, match="'mallory' is blocked"):
        run_command("loginlink", "mallory")
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        run_command("loginlink", "ghost")


def test_a_tampered_token_is_refused(client):
    alice = User.objects.create_user(username="alice", role=Role.ADMIN)
    bob = User.objects.create_user(username="bob", role=Role.READONLY)
    token = login_link_token(user=bob)
    # Swap in alice's id while keeping bob's signature.
    payload, signature = token.split(":", 1)
    forged_payload = signing.b64_encode(
        signing.JSONSerializer().dumps({"u": str(alice.pk), "f": "x"})
    ).decode()
    for bad in (forged_payload + ":" + signature, token[:-2] + "xx", "garbage", token + "0"):
        assert login_link_user(token=bad) is None
        assert client.get(f"/login-link/{bad}").status_code == 400
    assert logged_in_user_id(client) is None
    assert payload  # the real token had a payload part to forge


def test_a_token_signed_for_another_purpose_is_refused():
    alice = User.objects.create_user(username="alice", role=Role.ADMIN)
    other = signing.TimestampSigner(salt="something-else").sign_object({"u": str(alice.pk)})
    assert login_link_user(token=other) is None


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_uses_let_only_one_in():
    alice = User.objects.create_user(username="alice", role=Role.ADMIN)
    token = login_link_token(user=alice)
    barrier = threading.Barrier(4)
    results: list[User | None] = []

    def use() -> None:
        barrier.wait()
        try:
            results.append(login_link_consume(token=token))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 4
    assert [r.pk for r in results if r is not None] == [alice.pk]
