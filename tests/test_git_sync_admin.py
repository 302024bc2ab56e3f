"""The git sync admin and API: who may configure and sync, write-only credentials, the state."""

from __future__ import annotations

import json

import pytest

from accounts_app.models import Role
from gitsync_app.models import AuthMethod, GitRepository
from secrets_app import crypto
from tests.helpers_admin import client_for
from tests.helpers_api import client_for as api_client_for
from tests.helpers_git import configure

pytestmark = pytest.mark.django_db

ADD = "/admin/gitsync_app/gitrepository/add/"
CHANGE = "/admin/gitsync_app/gitrepository/1/change/"
TOKEN = "ghp_t0pS3cretT0kenValue"
# A real ed25519 public key (GitHub's published host key): valid base64 of a key blob.
HOST_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
FORM = {
    "url": "https://forge.example/team/pipelines.git",
    "branch": "main",
    "subdir": "",
    "auth_method": AuthMethod.TOKEN,
    "https_username": "x-access-token",
    "token": TOKEN,
    "ssh_private_key": "",
    "ssh_known_hosts": "",
    "webhook_secret": "hook-secret-value",
    "auto_sync_interval": "0",
    "enabled": "on",
}


def state() -> GitRepository:
    return GitRepository.objects.get()


def test_an_admin_configures_the_repository_with_an_encrypted_token():
    admin = client_for(Role.ADMIN)

    response = admin.post(ADD, FORM)

    assert response.status_code == 302, response.content.decode()[:2000]
    repo = state()
    assert repo.url == FORM["url"] and repo.auth_method == AuthMethod.TOKEN
    assert TOKEN not in repo.token_encrypted
    assert crypto.decrypt(repo.token_encrypted) == TOKEN
    assert crypto.decrypt(repo.webhook_secret_encrypted) == "hook-secret-value"
    assert repo.sync_requested_by == "admin: user-admin"
    page = admin.get(CHANGE).content.decode()
    assert TOKEN not in page and "hook-secret-value" not in page
    assert repo.token_encrypted not in page
    assert "HTTPS token, webhook secret (encrypted, never shown)" in page
    assert "/webhooks/git" in page


def test_leaving_the_token_empty_keeps_it_and_a_change_requests_a_sync():
    admin = client_for(Role.ADMIN)
    admin.post(ADD, FORM)
    GitRepository.objects.update(sync_requested_at=None)

    response = admin.post(CHANGE, {**FORM, "token": "", "webhook_secret": "", "branch": "prod"})

    assert response.status_code == 302
    repo = state()
    assert repo.branch == "prod" and crypto.decrypt(repo.token_encrypted) == TOKEN
    assert repo.sync_requested_at is not None


def test_a_bad_configuration_shows_the_field_error_and_saves_nothing():
    admin = client_for(Role.ADMIN)

    response = admin.post(ADD, {**FORM, "url": "https://x:secret@forge.example/r.git"})

    assert response.status_code == 200
    assert "Do not put a token in the URL" in response.content.decode()
    assert not GitRepository.objects.exists()


def test_generating_a_deploy_key_shows_its_public_half_only():
    admin = client_for(Role.ADMIN)
    form = {
        **FORM,
        "url": "git@forge.example:team/pipelines.git",
        "auth_method": AuthMethod.SSH_KEY,
        "token": "",
        "generate_deploy_key": "on",
        "ssh_known_hosts": "forge.example ssh-ed25519 " + HOST_KEY,
    }

    assert admin.post(ADD, form).status_code == 302

    repo = state()
    page = admin.get(CHANGE).content.decode()
    assert repo.ssh_public_key.startswith("ssh-ed25519 ") and repo.ssh_public_key in page
    assert "PRIVATE KEY" not in page
    assert crypto.decrypt(repo.ssh_private_key_encrypted).startswith(
        "-----BEGIN OPENSSH PRIVATE KEY-----"
    )
    assert repo.token_encrypted == ""  # the token method's credential is gone
    assert "ssh-ed25519 SHA256:" in page  # the pinned key's fingerprint


@pytest.mark.parametrize("role", [Role.WRITE, Role.READONLY])
def test_other_roles_see_the_state_but_cannot_configure(role):
    configure(FORM["url"], auth_method=AuthMethod.TOKEN, token=TOKEN)
    GitRepository.objects.update(last_error="fetching branch 'main': the server cannot be reached")
    client = client_for(role)

    page = client.get(CHANGE)

    assert page.status_code == 200
    text = page.content.decode()
    assert "the server cannot be reached" in text and TOKEN not in text
    assert 'name="token"' not in text and 'name="url"' not in text
    assert ("/admin/gitsync_app/gitrepository/1/sync/" in text) == (role == Role.WRITE)
    assert client.post(CHANGE, FORM).status_code == 403
    assert client.get(ADD).status_code == 403


def test_write_presses_sync_now_and_readonly_may_not():
    configure(FORM["url"])
    GitRepository.objects.update(sync_requested_at=None, sync_requested_by="")
    sync = "/admin/gitsync_app/gitrepository/1/sync/"

    assert client_for(Role.READONLY).post(sync).status_code == 403
    assert state().sync_requested_at is None
    response = client_for(Role.WRITE).post(sync, follow=True)

    assert "requested" in response.content.decode()
    assert state().sync_requested_by == "admin: user-write"


def test_the_sync_now_action_requests_a_sync():
    configure(FORM["url"])
    GitRepository.objects.update(sync_requested_at=None, sync_requested_by="")

    client_for(Role.WRITE).post(
        "/admin/gitsync_app/gitrepository/", {"action": "sync_now", "_selected_action": ["1"]}
    )

    assert state().sync_requested_by == "admin: user-write"


def test_the_list_opens_the_one_repository_and_a_second_cannot_be_added():
    admin = client_for(Role.ADMIN)
    assert admin.get("/admin/gitsync_app/gitrepository/").status_code == 200  # none yet
    configure(FORM["url"])

    assert admin.get("/admin/gitsync_app/gitrepository/").url == CHANGE
    assert admin.get(ADD).status_code == 403


def test_pinning_the_offered_host_keys_is_for_admins():
    configure(
        "ssh://git@forge.example/team/r.git",
        auth_method=AuthMethod.SSH_KEY,
        generate_deploy_key=True,
    )
    offered = f"forge.example ssh-ed25519 {HOST_KEY}\n"
    GitRepository.objects.update(ssh_offered_host_keys=offered)
    pin = "/admin/gitsync_app/gitrepository/1/pin-host-keys/"

    assert client_for(Role.WRITE).post(pin).status_code == 403
    response = client_for(Role.ADMIN).post(pin, follow=True)

    assert "Pinned: ssh-ed25519 SHA256:" in response.content.decode()
    assert state().ssh_known_hosts == offered and state().ssh_offered_host_keys == ""


# --- API ---------------------------------------------------------------------------------------


def test_the_api_shows_the_state_to_readers_without_credentials():
    configure(FORM["url"], auth_method=AuthMethod.TOKEN, token=TOKEN, webhook_secret="s")
    GitRepository.objects.update(commit="a" * 40, commit_message="add report")

    response = api_client_for(Role.READONLY).get("/api/git/")

    assert response.status_code == 200
    body = response.json()
    assert body["url"] == FORM["url"] and body["commit"] == "a" * 40
    assert body["has_token"] is True and body["webhook_enabled"] is True
    assert TOKEN not in response.content.decode()
    assert not any("encrypted" in key for key in body)


@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 401), (Role.READONLY, 403), (Role.WRITE, 202), (Role.ADMIN, 202)],
)
def test_sync_now_over_the_api_needs_write(role, status):
    configure(FORM["url"])
    GitRepository.objects.update(sync_requested_at=None)

    response = api_client_for(role).post("/api/git/sync/")

    assert response.status_code == status
    assert (state().sync_requested_at is not None) == (status == 202)
    if status == 202:
        assert response.json()["sync_requested_by"].startswith("api: ")


def test_the_api_answers_404_and_409_when_there_is_nothing_to_sync():
    reader, writer = api_client_for(Role.READONLY), api_client_for(Role.WRITE)
    assert reader.get("/api/git/").status_code == 404
    assert writer.post("/api/git/sync/").status_code == 404
    configure(FORM["url"], enabled=False)

    response = writer.post("/api/git/sync/")

    assert response.status_code == 409 and response.json()["error"] == "git_not_configured"


# --- audit log ---------------------------------------------------------------------------------


def test_configuration_and_sync_requests_are_audited_without_credentials():
    from audit_app.models import AuditEntry

    admin = client_for(Role.ADMIN)
    admin.post(ADD, FORM)
    client_for(Role.WRITE).post("/admin/gitsync_app/gitrepository/1/sync/")
    api_client_for(Role.WRITE).post("/api/git/sync/")
    admin.post(CHANGE, {**FORM, "token": "ghp_another", "branch": "prod", "webhook_secret": ""})

    entries = list(AuditEntry.objects.filter(action__startswith="git.").order_by("id"))
    assert [(e.action, e.interface, e.actor_name) for e in entries] == [
        ("git.create", "admin", "user-admin"),
        ("git.sync_request", "admin", "user-write"),
        ("git.sync_request", "api", entries[2].actor_name),
        ("git.update", "admin", "user-admin"),
    ]
    assert entries[2].actor_name.startswith("api-write")
    update = entries[3].changes
    assert update["branch"] == {"old": "main", "new": "prod"}
    assert update["token_encrypted"] == "changed"  # that it changed, never the value
    assert "webhook_secret_encrypted" not in update  # left empty: kept
    text = json.dumps([e.changes for e in entries] + [e.details for e in entries])
    assert TOKEN not in text and "ghp_another" not in text
