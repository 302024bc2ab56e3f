"""API tokens: issue, authenticate, expire, revoke; the API, the account page and `issuetoken`."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from io import StringIO

import jwt as pyjwt
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts_app.models import ApiToken, Role, User
from accounts_app.services import token_issue, tokens_purge_expired
from accounts_app.tokens import token_encode, token_hash
from tests.helpers_accounts import bearer, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.helpers_accounts_urls")]


@pytest.fixture
def alice() -> User:
    return make_user("alice", role=Role.WRITE)


def whoami(client, token: str):
    return client.get("/api/tokens/", **bearer(token))


def test_it_accepts_a_valid_token(client, alice):
    session, token = token_issue(user=alice, days=1, name="ci")

    response = whoami(client, token)

    assert response.status_code == 200
    assert [t["id"] for t in response.json()["results"]] == [str(session.id)]


def test_it_stores_only_a_hash_of_the_token(alice):
    session, token = token_issue(user=alice, days=1)
    session.refresh_from_db()
    assert session.token == token_hash(token)
    assert token not in session.token
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == str(alice.pk)
    assert claims["jti"] == str(session.id)
    assert claims["exp"] - claims["iat"] == 86400


def test_it_refuses_a_token_whose_row_expired(client, alice):
    session, token = token_issue(user=alice, days=1)
    ApiToken.objects.filter(id=session.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = whoami(client, token)

    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_it_refuses_a_token_whose_jwt_expired(client, alice, settings):
    session, _ = token_issue(user=alice, days=1)
    past = timezone.now() - timedelta(days=2)
    stale = token_encode(
        user_id=str(alice.pk),
        token_id=str(session.id),
        issued_at=past,
        expires_at=past + timedelta(hours=1),
    )
    # Even a row that (wrongly) matched this JWT must not revive it.
    ApiToken.objects.filter(id=session.id).update(token=token_hash(stale))

    assert whoami(client, stale).status_code == 401


def test_it_refuses_a_revoked_token(client, alice):
    session, token = token_issue(user=alice, days=1)
    ApiToken.objects.filter(id=session.id).delete()

    assert whoami(client, token).status_code == 401


def test_it_refuses_the_token_of_a_blocked_user(client, alice):
    _, token = token_issue(user=alice, days=1)
    # Set the flag directly (not through user_block, which also deletes the rows): the flag alone
    # must be enough.
    User.objects.filter(id=alice.id).update(blocked=True)

    assert whoami(client, token).status_code == 401


def test_it_refuses_a_tampered_signature(client, alice):
    _, token = token_issue(user=alice, days=1)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")

    assert whoami(client, f"{header}.{payload}.{flipped}").status_code == 401


def test_it_refuses_a_token_signed_with_another_key(client, alice):
    session, token = token_issue(user=alice, days=1)
    claims = pyjwt.decode(token, options={"verify_signature": False})
    forged = pyjwt.encode(
        claims, "not-the-secret-key-but-long-enough-0123456789", algorithm="HS256"
    )

    assert whoami(client, forged).status_code == 401


def test_it_refuses_a_valid_jwt_for_a_different_row(client, alice, settings):
    """A correctly signed JWT naming a live row is still refused unless it is that row's token."""
    session, _ = token_issue(user=alice, days=1)
    now = timezone.now()
    other = token_encode(
        user_id=str(alice.pk),
        token_id=str(session.id),
        issued_at=now,
        expires_at=now + timedelta(days=1, seconds=5),
    )
    assert whoami(client, other).status_code == 401


def test_it_refuses_a_token_naming_another_user(client, alice):
    bob = make_user("bob", role=Role.ADMIN)
    session, token = token_issue(user=alice, days=1)
    now = timezone.now()
    swapped = token_encode(
        user_id=str(bob.pk),
        token_id=str(session.id),
        issued_at=now,
        expires_at=now + timedelta(days=1),
    )
    ApiToken.objects.filter(id=session.id).update(token=token_hash(swapped))

    assert whoami(client, swapped).status_code == 401


def test_it_answers_401_with_a_bearer_challenge_without_credentials(client):
    response = client.get("/api/tokens/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")

    malformed = client.get("/api/tokens/", HTTP_AUTHORIZATION="Bearer")
    assert malformed.status_code == 401
    garbage = client.get("/api/tokens/", HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert garbage.status_code == 401


def test_it_issues_a_token_through_the_api_and_shows_it_once(client, alice):
    _, bootstrap = token_issue(user=alice, days=1)

    created = client.post(
        "/api/tokens/",
        {"name": "deploy", "days": 5},
        content_type="application/json",
        **bearer(bootstrap),
    )

    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "deploy" and body["user"] == "alice"
    assert whoami(client, body["token"]).status_code == 200
    listing = whoami(client, body["token"]).json()["results"]
    assert {t["name"] for t in listing} == {"deploy", ""}
    assert all("token" not in t for t in listing)
    row = ApiToken.objects.get(id=body["id"])
    assert (row.expires_at - row.created_at) == timedelta(days=5)


def test_it_rejects_bad_token_requests_with_field_errors(client, alice):
    _, token = token_issue(user=alice, days=1)
    response = client.post(
        "/api/tokens/",
        {"days": 0, "name": "x" * 101},
        content_type="application/json",
        **bearer(token),
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert set(body["fields"]) == {"days", "name"}
    assert ApiToken.objects.count() == 1


def test_it_lets_users_revoke_only_their_own_tokens(client, alice):
    bob = make_user("bob", role=Role.READONLY)
    alice_session, alice_token = token_issue(user=alice, days=1)
    bob_session, bob_token = token_issue(user=bob, days=1)

    foreign = client.delete(f"/api/tokens/{alice_session.id}/", **bearer(bob_token))
    own = client.delete(f"/api/tokens/{bob_session.id}/", **bearer(alice_token))

    assert foreign.status_code == 404
    assert own.status_code == 404
    assert ApiToken.objects.count() == 2
    assert client.delete(f"/api/tokens/{bob_session.id}/", **bearer(bob_token)).status_code == 204
    assert whoami(client, bob_token).status_code == 401
    assert whoami(client, alice_token).status_code == 200


def test_it_lets_an_admin_see_and_revoke_anyones_token(client, alice):
    root = make_user("root", role=Role.ADMIN)
    alice_session, alice_token = token_issue(user=alice, days=1)
    _, root_token = token_issue(user=root, days=1)

    listing = whoami(client, root_token).json()["results"]
    assert {t["user"] for t in listing} == {"alice", "root"}
    assert alice_token not in str(listing)

    assert (
        client.delete(f"/api/tokens/{alice_session.id}/", **bearer(root_token)).status_code == 204
    )
    assert whoami(client, alice_token).status_code == 401
    missing = client.delete(f"/api/tokens/{uuid.uuid4()}/", **bearer(root_token))
    assert missing.status_code == 404


def test_it_purges_only_expired_rows(alice):
    live, _ = token_issue(user=alice, days=1)
    old, _ = token_issue(user=alice, days=1)
    ApiToken.objects.filter(id=old.id).update(expires_at=timezone.now() - timedelta(minutes=1))

    assert tokens_purge_expired() == 1
    assert list(ApiToken.objects.values_list("id", flat=True)) == [live.id]


def test_issuetoken_prints_a_working_token(client, alice):
    out, err = StringIO(), StringIO()
    call_command("issuetoken", "alice", "--days", "3", stdout=out, stderr=err)

    token = out.getvalue().strip()
    assert whoami(client, token).status_code == 200
    row = ApiToken.objects.get(user=alice)
    assert (row.expires_at - row.created_at) == timedelta(days=3)
    assert token not in err.getvalue()


def test_issuetoken_refuses_unknown_blocked_and_bad_days(alice):
    make_user("eve", blocked=True)
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("issuetoken", "nobody", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="blocked"):
        call_command("issuetoken", "eve", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="days must be a whole number from 1"):
        call_command("issuetoken", "alice", "--days", "0", stdout=StringIO(), stderr=StringIO())
    assert not ApiToken.objects.exists()


def test_token_values_never_reach_the_logs(client, alice, caplog):
    caplog.set_level(logging.DEBUG)
    _, token = token_issue(user=alice, days=1)
    whoami(client, token)
    whoami(client, token + "x")
    client.delete(f"/api/tokens/{uuid.uuid4()}/", **bearer(token))

    assert caplog.records  # the failed requests were logged...
    assert token not in caplog.text  # ...without the token


def test_the_account_page_issues_and_revokes_own_tokens(client):
    reader = make_user("reader", role=Role.READONLY)
    client.force_login(reader)

    page = client.post("/account/tokens/", {"name": "laptop", "days": 2})

    assert page.status_code == 200
    session = ApiToken.objects.get(user=reader)
    token = page.context["new_token"]
    assert token and token.encode() in page.content
    assert whoami(client, token).status_code == 200
    again = client.get("/account/")
    assert b"laptop" in again.content
    assert token.encode() not in again.content

    revoked = client.post(f"/account/tokens/{session.id}/revoke/")
    assert revoked.status_code == 302
    assert not ApiToken.objects.exists()


def test_the_account_page_cannot_revoke_someone_elses_token(client):
    reader = make_user("reader", role=Role.READONLY)
    other = make_user("other", role=Role.WRITE)
    session, _ = token_issue(user=other, days=1)
    client.force_login(reader)

    client.post(f"/account/tokens/{session.id}/revoke/")

    assert ApiToken.objects.filter(id=session.id).exists()


def test_the_account_page_requires_login_and_post_for_changes(client):
    assert client.get("/account/").status_code == 302
    reader = make_user("reader")
    client.force_login(reader)
    assert client.get("/account/tokens/").status_code == 405
    bad = client.post("/account/tokens/", {"name": "x", "days": 0})
    assert bad.status_code == 400
    assert not ApiToken.objects.exists()
