from __future__ import annotations

from django.db import models


class AuthMethod(models.TextChoices):
    NONE = "none", "None (public repository or file://)"
    TOKEN = "token", "HTTPS token"
    SSH_KEY = "ssh_key", "SSH deploy key"


class GitRepository(models.Model):
    """The one repository the pipelines directory is synced from (a single row, id 1): its
    configuration, the encrypted credentials, and the state of the last sync.

    Credentials are Fernet-encrypted (secrets_app.crypto) and never rendered; host keys and the
    public half of the deploy key are not secret. Changes go through `gitsync_app.services`."""

    SINGLETON_ID = 1

    id = models.IntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    # --- configuration ---
    url = models.CharField(max_length=1024)
    branch = models.CharField(max_length=255, default="main")
    subdir = models.CharField(max_length=255, blank=True, default="")
    auth_method = models.CharField(
        max_length=16, choices=AuthMethod.choices, default=AuthMethod.NONE
    )
    https_username = models.CharField(max_length=255, blank=True, default="x-access-token")
    token_encrypted = models.TextField(blank=True, default="")
    ssh_private_key_encrypted = models.TextField(blank=True, default="")
    ssh_public_key = models.TextField(blank=True, default="")
    ssh_known_hosts = models.TextField(blank=True, default="")
    ssh_offered_host_keys = models.TextField(blank=True, default="")
    webhook_secret_encrypted = models.TextField(blank=True, default="")
    auto_sync_interval = models.IntegerField(default=0)
    enabled = models.BooleanField(default=True)
    # --- state ---
    commit = models.CharField(max_length=64, blank=True, default="")
    commit_message = models.TextField(blank=True, default="")
    commit_author = models.CharField(max_length=255, blank=True, default="")
    committed_at = models.DateTimeField(null=True, blank=True)
    previous_commit = models.CharField(max_length=64, blank=True, default="")
    synced_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sync_requested_at = models.DateTimeField(null=True, blank=True)
    sync_requested_by = models.CharField(max_length=255, blank=True, default="")
    lease_holder = models.CharField(max_length=128, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "git_repository"
        verbose_name = "git repository"
        verbose_name_plural = "git repository"

    def __str__(self) -> str:
        return f"{self.url} ({self.branch})"

    @property
    def short_commit(self) -> str:
        return self.commit[:12]

    @property
    def has_token(self) -> bool:
        return bool(self.token_encrypted)

    @property
    def has_deploy_key(self) -> bool:
        return bool(self.ssh_private_key_encrypted)

    @property
    def has_webhook_secret(self) -> bool:
        return bool(self.webhook_secret_encrypted)
