"""The push webhook (/webhooks/git): forge signatures, replays, branches, events."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest
from django.test import Client

from audit_app.models import AuditEntry
from gitsync_app.models import GitRepository
from tests.helpers_git import configure

pytestmark = pytest.mark.django_db

SECRET = "push-hook-secret-value"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()


def github_headers(body: bytes, secret: str = SECRET, *, event: str = "push") -> dict:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }


def gitlab_headers(token: str = SECRET, *, event: str = "Push Hook") -> dict:
    return {"X-Gitlab-Token": token, "X-Gitlab-Event": event}


@pytest.fixture
def repo() -> GitRepository:
    configure("https://forge.example/team/pipelines.git", webhook_secret=SECRET)
    GitRepository.objects.update(sync_requested_at=None, sync_requested_by="")
    return GitRepository.objects.get()


def post(body: bytes, headers: dict, content_type: str = "application/json"):
    return Client().post("/webhooks/git", data=body, content_type=content_type, headers=headers)


def requested() -> str:
    state = GitRepository.objects.get()
    return state.sync_requested_by if state.sync_requested_at else ""


def test_a_github_push_with_a_valid_signature_requests_a_sync(repo):
    response = post(PUSH, github_headers(PUSH))

    assert response.status_code == 202
    assert response.json()["status"] == "sync requested"
    assert requested() == "push webhook (github, 72d3162e-cc78-11e3-81ab-4c9367dc0958)"
    entry = AuditEntry.objects.get(action="git.sync_request")
    assert (entry.interface, entry.actor_type, entry.actor_name) == (
        "webhook",
        "webhook",
        "git push webhook (github)",
    )


def test_upper_case_hex_is_the_same_signature(repo):
    headers = github_headers(PUSH)
    headers["X-Hub-Signature-256"] = (
        headers["X-Hub-Signature-256"].upper().replace("SHA256", "sha256")
    )

    assert post(PUSH, headers).status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        github_headers(PUSH, "another-secret"),
        {**github_headers(PUSH), "X-Hub-Signature-256": "sha256=" + "0" * 64},
        gitlab_headers("another-secret"),
    ],
    ids=["wrong-key", "forged-digest", "wrong-gitlab-token"],
)
def test_a_wrong_signature_is_refused_and_requests_nothing(repo, headers):
    response = post(PUSH, headers)

    assert response.status_code == 401
    assert response.json()["error"] == "signature_invalid"
    assert requested() == ""


def test_a_signature_over_another_body_is_refused(repo):
    other = json.dumps({"ref": "refs/heads/main", "after": "1" * 40}).encode()

    assert post(PUSH, github_headers(other)).status_code == 401
    assert requested() == ""


def test_an_unsigned_request_is_refused(repo):
    response = post(PUSH, {"X-GitHub-Event": "push"})

    assert response.status_code == 401
    assert response.json()["error"] == "signature_required"


def test_a_replayed_request_is_refused(repo):
    assert post(PUSH, github_headers(PUSH)).status_code == 202
    GitRepository.objects.update(sync_requested_at=None, sync_requested_by="")

    replay = post(PUSH, github_headers(PUSH))

    assert replay.status_code == 409
    assert replay.json()["error"] == "replayed"
    assert requested() == ""


def test_a_forged_request_does_not_block_the_genuine_one(repo):
    assert post(PUSH, github_headers(PUSH, "guess")).status_code == 401
    assert post(PUSH, github_headers(PUSH)).status_code == 202


def test_a_gitlab_push_with_the_token_requests_a_sync_and_a_replay_is_refused(repo):
    assert post(PUSH, gitlab_headers()).status_code == 202
    assert requested().startswith("push webhook (gitlab")

    assert post(PUSH, gitlab_headers()).status_code == 409


def test_a_push_to_another_branch_is_ignored(repo):
    body = json.dumps({"ref": "refs/heads/feature"}).encode()

    response = post(body, github_headers(body))

    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert "refs/heads/feature" in response.json()["detail"]
    assert requested() == ""


def test_ping_and_other_events_are_answered_but_request_nothing(repo):
    ping = post(b"{}", github_headers(b"{}", event="ping"))
    issue = post(b'{"action": "x"}', github_headers(b'{"action": "x"}', event="issues"))

    assert (ping.status_code, ping.json()) == (200, {"status": "pong"})
    assert issue.status_code == 202 and issue.json()["status"] == "ignored"
    assert requested() == ""


def test_githubs_form_encoded_payload_is_read(repo):
    body = urlencode({"payload": PUSH.decode()}).encode()

    response = post(body, github_headers(body), "application/x-www-form-urlencoded")

    assert response.status_code == 202 and requested()


def test_without_a_secret_or_a_repository_the_url_is_unknown():
    assert post(PUSH, github_headers(PUSH)).status_code == 404
    configure("https://forge.example/team/pipelines.git")

    response = post(PUSH, github_headers(PUSH))

    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_a_paused_repository_refuses_with_409(repo):
    configure("https://forge.example/team/pipelines.git", enabled=False)

    response = post(PUSH, github_headers(PUSH))

    assert response.status_code == 409
    assert "paused" in response.json()["detail"]


def test_malformed_input_gets_a_specific_4xx(repo, settings):
    body = b"{not json"
    assert post(body, github_headers(body)).json()["error"] == "parse_error"
    settings.FASTFLOW_WEBHOOK_MAX_BYTES = 1024
    big = b"x" * 2048
    assert post(big, github_headers(big)).status_code == 413
    assert Client().get("/webhooks/git").status_code == 405
