"""The git sync admin: one repository (a single row), its state, Sync now.

Credentials are write-only, like secrets: the token, the private deploy key and the webhook
secret are never rendered; the form says only whether one is stored. The public half of the
deploy key and the host keys are not secret and are shown. Configuring is for ADMIN (the
repository is the code every run executes); WRITE may Sync now; READONLY sees the state.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.debug import sensitive_post_parameters

from accounts_app.roles import role_can
from audit_app.context import AuditContext
from fastflow_site.errors import ServiceError
from gitsync_app import ssh
from gitsync_app.models import AuthMethod, GitRepository
from gitsync_app.services import (
    RepositoryConfig,
    repository_config_errors,
    repository_configure,
    repository_pin_offered_host_keys,
    repository_request_sync,
)

WRITE_ONLY = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
SECRET_FIELDS = ("token", "ssh_private_key", "webhook_secret")
STATUS_FIELDS = (
    "state_column",
    "commit_column",
    "commit_message",
    "commit_author",
    "committed_at",
    "previous_commit",
    "synced_at",
    "last_attempt_at",
    "last_error_column",
    "request_column",
)


class GitRepositoryForm(forms.ModelForm):
    token = forms.CharField(
        required=False,
        strip=True,
        widget=WRITE_ONLY,
        help_text="HTTPS token with read access (write-only; leave empty to keep the stored one).",
    )
    ssh_private_key = forms.CharField(
        label="SSH private deploy key",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="An unencrypted OpenSSH private key (write-only; leave empty to keep the "
        "stored one), or tick 'Generate a deploy key'.",
    )
    generate_deploy_key = forms.BooleanField(
        label="Generate a deploy key",
        required=False,
        help_text="Make a new Ed25519 key pair; its public half is shown after saving, to add "
        "to the repository as a read-only deploy key.",
    )
    webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=WRITE_ONLY,
        help_text="Shared secret of the push webhook (GitHub 'Secret', GitLab 'Secret token'; "
        "write-only; leave empty to keep the stored one).",
    )

    class Meta:
        model = GitRepository
        fields = (
            "url",
            "branch",
            "subdir",
            "auth_method",
            "https_username",
            "ssh_known_hosts",
            "auto_sync_interval",
            "enabled",
        )
        labels = {
            "url": "Repository URL",
            "subdir": "Subfolder",
            "https_username": "HTTPS username",
            "ssh_known_hosts": "Pinned SSH host keys",
            "auto_sync_interval": "Auto-sync interval (seconds)",
        }
        help_texts = {
            "url": "https://…, ssh://…, git@host:path, or file://… for a repository on the "
            "engine's machine. No credentials in the URL.",
            "subdir": "Folder of the repository that holds the pipeline folders; empty for the "
            "repository root.",
            "https_username": "Sent with the token: x-access-token (GitHub), oauth2 (GitLab), "
            "x-token-auth (Bitbucket).",
            "ssh_known_hosts": "known_hosts lines (or 'keytype key') of the SSH server; only "
            "these are trusted. Empty: the next sync shows what the server offers, to pin.",
            "auto_sync_interval": "0 = off (sync on push webhook and Sync now only).",
        }
        widgets = {"ssh_known_hosts": forms.Textarea(attrs={"rows": 3})}

    def config(self) -> RepositoryConfig:
        data = self.cleaned_data
        return RepositoryConfig(
            url=data.get("url") or "",
            branch=data.get("branch") or "",
            subdir=data.get("subdir") or "",
            auth_method=data.get("auth_method") or AuthMethod.NONE,
            https_username=data.get("https_username") or "",
            token=data.get("token") or None,
            ssh_private_key=data.get("ssh_private_key") or None,
            generate_deploy_key=bool(data.get("generate_deploy_key")),
            ssh_known_hosts=data.get("ssh_known_hosts") or "",
            webhook_secret=data.get("webhook_secret") or None,
            auto_sync_interval=data.get("auto_sync_interval") or 0,
            enabled=bool(data.get("enabled")),
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors:
            for name, message in repository_config_errors(config=self.config()).items():
                self.add_error(name if name in self.fields else None, message)
        return cleaned

    def _post_clean(self) -> None:
        # The row is written by repository_configure (credentials encrypted), never from here.
        pass


def _pre(text: str) -> SafeString | str:
    if not text:
        return "—"
    return format_html('<pre style="white-space:pre-wrap;margin:0;">{}</pre>', text)


@admin.register(GitRepository)
class GitRepositoryAdmin(admin.ModelAdmin):
    form = GitRepositoryForm
    change_form_template = "admin/gitsync_app/gitrepository/change_form.html"
    list_display = ("url", "branch", "state_column", "commit_column", "synced_at")
    actions = ("sync_now",)
    readonly_fields = (
        *STATUS_FIELDS,
        "credentials_column",
        "public_key_column",
        "pinned_column",
        "offered_column",
        "webhook_column",
    )

    # --- permissions ----------------------------------------------------------------------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not GitRepository.objects.exists()

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return role_can(request.user.role, "sync")

    # --- form -----------------------------------------------------------------------------------
    def get_fieldsets(self, request: HttpRequest, obj: GitRepository | None = None) -> list:
        status = ("Status", {"fields": STATUS_FIELDS})
        editing = self.has_change_permission(request, obj) or obj is None
        source = ("url", "branch", "subdir", "auto_sync_interval", "enabled")
        if editing:
            access = (
                "auth_method",
                "credentials_column",
                "https_username",
                "token",
                "ssh_private_key",
                "generate_deploy_key",
                "public_key_column",
                "ssh_known_hosts",
                "pinned_column",
                "offered_column",
            )
            hook = ("webhook_column", "webhook_secret")
        else:
            access = ("auth_method", "credentials_column", "public_key_column", "pinned_column")
            hook = ("webhook_column",)
        fieldsets = [
            (None, {"fields": source}),
            ("Access", {"fields": access}),
            ("Push webhook", {"fields": hook}),
        ]
        return fieldsets if obj is None else [status, *fieldsets]

    @method_decorator(sensitive_post_parameters(*SECRET_FIELDS))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            "has_sync_permission": self.has_sync_permission(request),
            "can_pin": object_id is not None
            and self.has_change_permission(request)
            and GitRepository.objects.exclude(ssh_offered_host_keys="").exists(),
            **(extra_context or {}),
        }
        return super().changeform_view(request, object_id, form_url, context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # One repository: its page is the list.
        repo = GitRepository.objects.first()
        if repo is not None and "action" not in request.POST:
            return redirect(reverse("admin:gitsync_app_gitrepository_change", args=[repo.pk]))
        return super().changelist_view(request, extra_context)

    def save_model(
        self, request: HttpRequest, obj: GitRepository, form: GitRepositoryForm, change: bool
    ) -> None:
        saved = repository_configure(
            config=form.config(), requested_by=_who(request), audit=_audit(request)
        )
        form.instance = saved
        obj.pk, obj._state.adding = saved.pk, False
        if saved.sync_requested_at is not None:
            self.message_user(request, _requested_message(saved), messages.INFO)

    # --- buttons and actions --------------------------------------------------------------------
    def get_urls(self) -> list:
        info = (self.opts.app_label, self.opts.model_name)
        return [
            path(
                "<path:object_id>/sync/",
                self.admin_site.admin_view(self.sync_view),
                name="{}_{}_sync".format(*info),
            ),
            path(
                "<path:object_id>/pin-host-keys/",
                self.admin_site.admin_view(self.pin_view),
                name="{}_{}_pin".format(*info),
            ),
            *super().get_urls(),
        ]

    def _back(self, object_id: str) -> HttpResponseRedirect:
        return redirect(reverse("admin:gitsync_app_gitrepository_change", args=[object_id]))

    def sync_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_sync_permission(request):
            raise PermissionDenied
        self._request_sync(request)
        return self._back(object_id)

    def pin_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            repo = repository_pin_offered_host_keys(audit=_audit(request))
        except ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            prints = "; ".join(ssh.host_key_fingerprints(repo.ssh_known_hosts))
            self.message_user(request, f"Pinned: {prints}. A sync is requested.", messages.SUCCESS)
        return self._back(object_id)

    @admin.action(description="Sync now", permissions=["sync"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._request_sync(request)

    def _request_sync(self, request: HttpRequest) -> None:
        try:
            repo = repository_request_sync(requested_by=_who(request), audit=_audit(request))
        except ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, _requested_message(repo), messages.SUCCESS)

    # --- columns --------------------------------------------------------------------------------
    @admin.display(description="State")
    def state_column(self, obj: GitRepository) -> SafeString:
        if obj.lease_holder:
            word, color = f"syncing ({obj.lease_holder})", "#0d6efd"
        elif obj.last_error:
            word, color = "last sync failed", "#dc3545"
        elif obj.commit:
            word, color = "in sync", "#198754"
        else:
            word, color = "never synced", "#6c757d"
        if not obj.enabled:
            word, color = f"paused; {word}", "#6c757d"
        return format_html('<strong style="color:{};">{}</strong>', color, word)

    @admin.display(description="Commit")
    def commit_column(self, obj: GitRepository) -> SafeString | str:
        if not obj.commit:
            return "—"
        return format_html('<code title="{}">{}</code>', obj.commit, obj.short_commit)

    @admin.display(description="Why the last sync failed")
    def last_error_column(self, obj: GitRepository) -> SafeString | str:
        if not obj.last_error:
            return "—"
        return format_html(
            '<pre style="white-space:pre-wrap;margin:0;color:#dc3545;">{}</pre>{}',
            obj.last_error,
            "The pipelines directory still shows the last good checkout." if obj.commit else "",
        )

    @admin.display(description="Sync requested")
    def request_column(self, obj: GitRepository) -> str:
        if obj.sync_requested_at is None:
            return "—"
        return f"{obj.sync_requested_at:%Y-%m-%d %H:%M:%S} UTC by {obj.sync_requested_by}"

    @admin.display(description="Stored credentials")
    def credentials_column(self, obj: GitRepository) -> str:
        stored = [
            label
            for label, present in (
                ("HTTPS token", obj.has_token),
                ("SSH deploy key", obj.has_deploy_key),
                ("webhook secret", obj.has_webhook_secret),
            )
            if present
        ]
        return ", ".join(stored) + " (encrypted, never shown)" if stored else "none"

    @admin.display(description="Public deploy key (add it to the repository, read-only)")
    def public_key_column(self, obj: GitRepository) -> SafeString | str:
        return _pre(obj.ssh_public_key)

    @admin.display(description="Pinned host key fingerprints")
    def pinned_column(self, obj: GitRepository) -> SafeString | str:
        return _pre("\n".join(ssh.host_key_fingerprints(obj.ssh_known_hosts)))

    @admin.display(description="Host keys the server offered (not trusted until pinned)")
    def offered_column(self, obj: GitRepository) -> SafeString | str:
        prints = ssh.host_key_fingerprints(obj.ssh_offered_host_keys)
        return format_html_join("", "<div><code>{}</code></div>", ((p,) for p in prints)) or "—"

    @admin.display(description="Push webhook URL")
    def webhook_column(self, obj: GitRepository) -> SafeString | str:
        url = f"{settings.FASTFLOW_BASE_URL}/webhooks/git"
        state = "on" if obj.has_webhook_secret else "off until a webhook secret is set"
        return format_html(
            "<code>{}</code> ({}). GitHub: content type application/json, the secret above, "
            "push events. GitLab: the secret as 'Secret token', push events.",
            url,
            state,
        )


def _audit(request: HttpRequest) -> AuditContext:
    return AuditContext.from_request(request, interface="admin")


def _who(request: HttpRequest) -> str:
    return f"admin: {request.user.get_username()}"


def _requested_message(repo: GitRepository) -> str:
    return (
        f"Sync of {repo.url} ({repo.branch}) requested: the engine leading the scheduler "
        "syncs within a few seconds; reload this page to see the result."
    )
