"""Git sync flows: configure the repository, request a sync, sync, prune old checkouts.

Who does what:
- the admin, the API and the push webhook only *request* a sync (`repository_request_sync`):
  the web process never writes the pipelines directory and never talks to a forge;
- the scheduler-leader engine syncs (`repository_sync`) when a request is pending or the
  auto-sync interval has passed (`repository_sync_due`), and prunes checkouts no run needs;
- `manage.py gitsync` syncs at once from the command line.

One sync at a time, wherever it runs: the repository row carries a lease (a conditional UPDATE;
no transaction is held across git's network I/O). A sync fetches the branch, checks the commit
out into its own directory, switches the pipelines symlink to it (`pipelines_app.checkouts`) and
runs discovery. Anything failing before the switch leaves the last good checkout in place, and
the reason is stored on the row (`last_error`), where the admin and the API show it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit_app.context import AuditContext
from audit_app.services import audit_changes, audit_record
from gitsync_app import ssh
from gitsync_app.errors import GitConfigInvalid, GitNotConfigured, GitSyncBusy, GitSyncFailed
from gitsync_app.git import Credentials, Git, GitError
from gitsync_app.models import AuthMethod, GitRepository
from pipelines_app import checkouts
from pipelines_app.errors import PipelinesDirError
from pipelines_app.services import SyncReport, pipelines_sync
from secrets_app import crypto

logger = logging.getLogger(__name__)

AUTO_SYNC_MIN_SECONDS = 10
# Branch names git accepts (git check-ref-format, without running git in the web process).
_BAD_BRANCH = re.compile(r"(^[-/.])|(\.\.)|(//)|(@\{)|([\x00-\x20\x7f~^:?*\[\\])|([/.]$)|(\.lock$)")
_SAFE_PART = re.compile(r"[A-Za-z0-9_.-]+")
# The error kept on the row is for people; git's own output is cut to its tail.
ERROR_MAX_CHARS = 4000

CommitsInUse = Callable[[], set[str]]
SECRET_COLUMNS = ("token_encrypted", "ssh_private_key_encrypted", "webhook_secret_encrypted")
CONFIG_FIELDS = (
    "url",
    "branch",
    "subdir",
    "auth_method",
    "https_username",
    "token_encrypted",
    "ssh_private_key_encrypted",
    "ssh_public_key",
    "ssh_known_hosts",
    "webhook_secret_encrypted",
    "auto_sync_interval",
    "enabled",
)


@dataclass
class SyncResult:
    ok: bool
    commit: str = ""
    changed: bool = False
    error: str = ""
    report: SyncReport | None = None
    pruned: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ok:
            return f"sync failed: {self.error}"
        verb = "switched to" if self.changed else "already at"
        text = f"{verb} commit {self.commit[:12]}"
        if self.report is not None:
            text += f"; {self.report.summary()}"
        return text


def git_repo_dir() -> Path:
    return Path(settings.FASTFLOW_GIT_DIR) / "repo.git"


def repository_get() -> GitRepository | None:
    return GitRepository.objects.filter(pk=GitRepository.SINGLETON_ID).first()


def _configured() -> GitRepository:
    repo = repository_get()
    if repo is None or not repo.url:
        raise GitNotConfigured("git sync is not configured (admin: Git sync → Git repository)")
    return repo


# --- configuration -------------------------------------------------------------------------------


def _url_problem(url: str, method: str) -> str:
    if not url:
        return "Enter the repository URL."
    if len(url) > 1024 or any(c.isspace() or ord(c) < 32 for c in url) or url.startswith("-"):
        return "Not a repository URL (no spaces or control characters, at most 1024)."
    host = ssh.ssh_host(url)
    scheme = urlsplit(url).scheme if "://" in url else ""
    if host is None and scheme not in {"https", "http", "file"}:
        return (
            "Use https://…, http://…, ssh://…, git@host:path or file://… (for a repository on "
            "this machine)."
        )
    if scheme in {"https", "http"}:
        parts = urlsplit(url)
        if not parts.hostname:
            return "The URL names no host."
        if parts.password is not None:
            return "Do not put a token in the URL: enter it in the token field (it is encrypted)."
    if method == AuthMethod.TOKEN and scheme not in {"https", "http"}:
        return "An HTTPS token needs an https:// (or http://) URL."
    if method == AuthMethod.SSH_KEY and host is None:
        return "A deploy key needs an SSH URL (ssh://… or git@host:path)."
    if method == AuthMethod.NONE and host is not None:
        return "An SSH URL needs a deploy key (authentication: SSH deploy key)."
    return ""


def _subdir_clean(subdir: str) -> tuple[str, str]:
    cleaned = subdir.strip().strip("/")
    if not cleaned:
        return "", ""
    parts = cleaned.split("/")
    if any(p in {"", ".", ".."} or not _SAFE_PART.fullmatch(p) for p in parts):
        return "", (
            "A relative folder inside the repository: letters, digits, '_', '.', '-' and '/', "
            "no '..'."
        )
    return "/".join(parts), ""


@dataclass(frozen=True)
class RepositoryConfig:
    """What an operator configures (credentials in plaintext; None or "" keeps the stored)."""

    url: str
    branch: str = "main"
    subdir: str = ""
    auth_method: str = AuthMethod.NONE
    https_username: str = "x-access-token"
    token: str | None = None
    ssh_private_key: str | None = None
    generate_deploy_key: bool = False
    ssh_known_hosts: str = ""
    webhook_secret: str | None = None
    auto_sync_interval: int = 0
    enabled: bool = True


@dataclass
class _Checked:
    errors: dict[str, str] = field(default_factory=dict)
    url: str = ""
    branch: str = ""
    subdir: str = ""
    known_hosts: str = ""
    public_key: str = ""


def _check(config: RepositoryConfig, repo: GitRepository) -> _Checked:
    checked = _Checked(url=config.url.strip(), branch=config.branch.strip())
    _check_source(config, checked)
    _check_credentials(config, repo, checked)
    return checked


def _check_source(config: RepositoryConfig, checked: _Checked) -> None:
    """What is synced and how often: method, URL, branch, folder, interval."""
    errors, method = checked.errors, config.auth_method
    if method not in AuthMethod.values:
        errors["auth_method"] = f"One of {', '.join(AuthMethod.values)}."
    elif problem := _url_problem(checked.url, method):
        errors["url"] = problem
    if not checked.branch or len(checked.branch) > 255 or _BAD_BRANCH.search(checked.branch):
        errors["branch"] = "Not a valid branch name."
    checked.subdir, problem = _subdir_clean(config.subdir)
    if problem:
        errors["subdir"] = problem
    interval = config.auto_sync_interval
    if interval != 0 and interval < AUTO_SYNC_MIN_SECONDS:
        errors["auto_sync_interval"] = (
            f"0 (off) or at least {AUTO_SYNC_MIN_SECONDS} seconds; a push webhook syncs at once."
        )


def _check_credentials(config: RepositoryConfig, repo: GitRepository, checked: _Checked) -> None:
    """The token or deploy key the method needs (given now or stored), and the pinned host
    keys of an SSH URL."""
    errors, method = checked.errors, config.auth_method
    if method == AuthMethod.TOKEN and not (config.token or repo.token_encrypted):
        errors["token"] = "Enter a token (personal access or deploy token, read access)."  # noqa: S105
    if config.ssh_private_key and not config.generate_deploy_key:
        try:
            checked.public_key = ssh.deploy_key_public_half(config.ssh_private_key)
        except ValueError as exc:
            errors["ssh_private_key"] = str(exc)
    elif (
        method == AuthMethod.SSH_KEY
        and not config.generate_deploy_key
        and not repo.ssh_private_key_encrypted
    ):
        errors["ssh_private_key"] = "Paste a private deploy key, or generate one."
    host = ssh.ssh_host(checked.url)
    if method == AuthMethod.SSH_KEY and host is not None and "url" not in errors:
        try:
            checked.known_hosts = ssh.known_hosts_normalise(config.ssh_known_hosts, host)
        except ssh.HostKeyError as exc:
            errors["ssh_known_hosts"] = str(exc)


def repository_config_errors(*, config: RepositoryConfig) -> dict[str, str]:
    """Field → problem for a configuration `repository_configure` would refuse ({} if none)."""
    return _check(config, repository_get() or GitRepository()).errors


def _audited(repo: GitRepository) -> dict[str, object]:
    """The configuration as the audit log compares it (credentials only as "changed")."""
    return {name: getattr(repo, name) for name in CONFIG_FIELDS}


def repository_configure(
    *,
    config: RepositoryConfig,
    requested_by: str = "configuration",
    audit: AuditContext | None = None,
) -> GitRepository:
    """Create or change the repository. Credentials the chosen method does not use are deleted.
    A change of what is synced (URL, branch, folder, credentials, host keys) requests a sync."""
    repo = repository_get() or GitRepository()
    checked = _check(config, repo)
    if checked.errors:
        raise GitConfigInvalid(
            "invalid git sync configuration: " + "; ".join(checked.errors.values()),
            checked.errors,
        )
    method = config.auth_method
    adding = repo._state.adding
    audited_before = {} if adding else _audited(repo)
    before = (repo.url, repo.branch, repo.subdir, repo.auth_method, repo.ssh_known_hosts)
    after = (checked.url, checked.branch, checked.subdir, method, checked.known_hosts)
    repo.url, repo.branch, repo.subdir, repo.auth_method, repo.ssh_known_hosts = after
    repo.https_username = config.https_username.strip() or "x-access-token"
    credentials_changed = bool(config.token or config.ssh_private_key or config.generate_deploy_key)
    if method != AuthMethod.TOKEN:
        repo.token_encrypted = ""
    elif config.token:
        repo.token_encrypted = crypto.encrypt(config.token)
    if method != AuthMethod.SSH_KEY:
        repo.ssh_private_key_encrypted = repo.ssh_public_key = ""
    elif config.generate_deploy_key:
        private, repo.ssh_public_key = ssh.deploy_key_generate()
        repo.ssh_private_key_encrypted = crypto.encrypt(private)
    elif config.ssh_private_key:
        private = ssh.private_key_normalise(config.ssh_private_key)
        repo.ssh_private_key_encrypted = crypto.encrypt(private)
        repo.ssh_public_key = checked.public_key
    fields = list(CONFIG_FIELDS)
    if before[0] != checked.url:
        repo.ssh_offered_host_keys = ""  # offered by another server
        fields.append("ssh_offered_host_keys")
    if config.webhook_secret:
        repo.webhook_secret_encrypted = crypto.encrypt(config.webhook_secret)
    repo.auto_sync_interval = config.auto_sync_interval
    repo.enabled = config.enabled
    if config.enabled and (before != after or credentials_changed or repo._state.adding):
        repo.sync_requested_at, repo.sync_requested_by = timezone.now(), requested_by[:255]
        fields += ["sync_requested_at", "sync_requested_by"]
    with transaction.atomic():
        # Only the configuration: a sync may be writing the state columns at this moment.
        repo.save(update_fields=None if adding else [*fields, "updated_at"])
        audit_record(
            audit=audit,
            action="git.create" if adding else "git.update",
            target=repo,
            changes=audit_changes(
                before=audited_before, after=_audited(repo), secret=SECRET_COLUMNS
            ),
        )
    return repo


def repository_pin_offered_host_keys(*, audit: AuditContext | None = None) -> GitRepository:
    """Trust the host keys the server offered at the last sync (an operator's deliberate act,
    after comparing the fingerprints with the ones the forge publishes)."""
    repo = _configured()
    host = ssh.ssh_host(repo.url)
    if host is None or not repo.ssh_offered_host_keys.strip():
        raise GitConfigInvalid(
            "no offered host keys to pin: sync once with an SSH URL, then pin what it saw"
        )
    pinned = ssh.known_hosts_normalise(repo.ssh_offered_host_keys, host)
    with transaction.atomic():
        GitRepository.objects.filter(pk=repo.pk).update(
            ssh_known_hosts=pinned,
            ssh_offered_host_keys="",
            sync_requested_at=timezone.now(),
            sync_requested_by="host keys pinned",
            updated_at=timezone.now(),
        )
        audit_record(
            audit=audit,
            action="git.pin_host_keys",
            target=repo,
            details={"fingerprints": ssh.host_key_fingerprints(pinned)},
        )
    repo.refresh_from_db()
    return repo


def repository_webhook_secret(*, repo: GitRepository) -> str:
    """The push webhook's shared secret, "" when none is set (then the webhook is off)."""
    if not repo.webhook_secret_encrypted:
        return ""
    return crypto.decrypt(repo.webhook_secret_encrypted)


# --- requesting and running syncs ----------------------------------------------------------------


def repository_request_sync(
    *, requested_by: str, audit: AuditContext | None = None
) -> GitRepository:
    """Ask the leader engine to sync soon (within about a second while one runs)."""
    repo = _configured()
    if not repo.enabled:
        raise GitNotConfigured("git sync is paused (the repository is not enabled)")
    now = timezone.now()
    with transaction.atomic():
        GitRepository.objects.filter(pk=repo.pk).update(
            sync_requested_at=now, sync_requested_by=requested_by[:255]
        )
        audit_record(audit=audit, action="git.sync_request", target=repo)
    repo.sync_requested_at, repo.sync_requested_by = now, requested_by[:255]
    return repo


def repository_sync_due(*, now: datetime | None = None) -> bool:
    """Whether the leader should sync now: a pending request, or the auto-sync interval."""
    repo = repository_get()
    if repo is None or not repo.url or not repo.enabled:
        return False
    if repo.sync_requested_at is not None:
        return True
    if repo.auto_sync_interval <= 0:
        return False
    now = now or timezone.now()
    last = repo.last_attempt_at
    return last is None or (now - last).total_seconds() >= repo.auto_sync_interval


def _lease_seconds() -> float:
    # A fetch, a host-key scan and a checkout, each bounded by the git timeout, and a margin.
    return 3 * settings.FASTFLOW_GIT_TIMEOUT_SECONDS + 60


@contextlib.contextmanager
def _lease(holder: str) -> Iterator[bool]:
    now = timezone.now()
    taken = (
        GitRepository.objects.filter(pk=GitRepository.SINGLETON_ID)
        .filter(Q(lease_holder="") | Q(lease_holder=holder) | Q(lease_expires_at__lt=now))
        .update(
            lease_holder=holder,
            lease_expires_at=now + timedelta(seconds=_lease_seconds()),
        )
    )
    try:
        yield bool(taken)
    finally:
        if taken:
            GitRepository.objects.filter(pk=GitRepository.SINGLETON_ID, lease_holder=holder).update(
                lease_holder="", lease_expires_at=None
            )


def _credentials(repo: GitRepository) -> Credentials:
    try:
        if repo.auth_method == AuthMethod.TOKEN:
            return Credentials(
                method="token",
                username=repo.https_username,
                token=crypto.decrypt(repo.token_encrypted),
            )
        if repo.auth_method == AuthMethod.SSH_KEY:
            return Credentials(
                method="ssh_key",
                private_key=crypto.decrypt(repo.ssh_private_key_encrypted),
                known_hosts=repo.ssh_known_hosts,
            )
    except crypto.DecryptionError:
        raise GitSyncFailed(
            "the stored credential cannot be decrypted with any FASTFLOW_ENCRYPTION_KEY; "
            "enter it again"
        ) from None
    return Credentials()


def _offered_host_keys(repo: GitRepository) -> str:
    """Scan and remember what the server offers, so an operator can compare and pin it."""
    host = ssh.ssh_host(repo.url)
    if host is None:
        return ""
    offered = ssh.host_keys_scan(host, timeout=min(settings.FASTFLOW_GIT_TIMEOUT_SECONDS, 30))
    GitRepository.objects.filter(pk=repo.pk).update(ssh_offered_host_keys=offered)
    if not offered:
        return f"{host.pattern} offered no host key (unreachable?)"
    prints = "; ".join(ssh.host_key_fingerprints(offered))
    return f"the server offers: {prints}"


def _fetch_and_switch(repo: GitRepository) -> tuple[str, bool, SyncReport]:
    credentials = _credentials(repo)
    if credentials.method == "ssh_key" and not credentials.known_hosts.strip():
        offered = _offered_host_keys(repo)
        raise GitSyncFailed(
            "no SSH host key is pinned, so the server cannot be trusted yet; "
            f"{offered}. Compare with the fingerprints your forge publishes, then pin them "
            "(admin action 'Pin the offered host keys', or paste them into Pinned host keys)"
        )
    git = Git(repo_dir=git_repo_dir(), timeout=settings.FASTFLOW_GIT_TIMEOUT_SECONDS)
    try:
        sha = git.fetch(url=repo.url, branch=repo.branch, credentials=credentials)
    except GitError as exc:
        if credentials.method == "ssh_key" and "host key verification failed" in str(exc).lower():
            raise GitSyncFailed(f"{exc}\n{_offered_host_keys(repo)}") from None
        raise
    if repo.subdir and not git.is_directory(sha, repo.subdir):
        raise GitSyncFailed(f"commit {sha[:12]} has no folder '{repo.subdir}' (Subfolder)")
    info = git.commit_info(sha)
    path = checkouts.checkout_path(sha)
    if not path.is_dir():
        draft = checkouts.draft_path(sha)
        try:
            git.checkout(sha, draft)
            os.rename(draft, path)  # complete or absent: a checkout is never half there
        finally:
            if draft.exists():
                checkouts.remove(draft.name)
    changed = checkouts.switch_to(sha, repo.subdir)
    # Discovery of the new checkout; the leader's chores then sync schedules and warm caches.
    report = pipelines_sync()
    GitRepository.objects.filter(pk=repo.pk).update(
        commit=sha,
        commit_message=info.subject[:10000],
        commit_author=info.author[:255],
        committed_at=info.committed_at,
        previous_commit=repo.commit if repo.commit and repo.commit != sha else repo.previous_commit,
        synced_at=timezone.now(),
        last_error="",
        ssh_offered_host_keys="",
    )
    return sha, changed, report


def repository_sync(
    *,
    holder: str,
    commits_in_use: CommitsInUse | None = None,
    audit: AuditContext | None = None,
) -> SyncResult:
    """Fetch, check out, switch, discover; then (with `commits_in_use`) prune old checkouts.

    Raises GitNotConfigured / GitSyncBusy when it cannot start; a sync that ran and failed is
    returned (ok=False) with the reason, which is also stored on the repository row. The audit
    log records a switch to another commit and a failure, not a sync that found nothing new.
    """
    repo = _configured()
    with _lease(holder) as taken:
        if not taken:
            raise GitSyncBusy("another git sync is running; try again when it has finished")
        repo.refresh_from_db()
        requested_at = repo.sync_requested_at
        GitRepository.objects.filter(pk=repo.pk).update(last_attempt_at=timezone.now())
        logger.info("git sync of %s (branch %s) started by %s", repo.url, repo.branch, holder)
        try:
            sha, changed, report = _fetch_and_switch(repo)
        except (GitError, GitSyncFailed, checkouts.CheckoutError, PipelinesDirError) as exc:
            error = str(exc)[:ERROR_MAX_CHARS]
            with transaction.atomic():
                GitRepository.objects.filter(pk=repo.pk).update(last_error=error)
                audit_record(
                    audit=audit,
                    action="git.sync_failed",
                    target=repo,
                    details={"error": error, "commit": repo.commit},
                )
            logger.warning(
                "git sync of %s failed; the last good checkout stays: %s", repo.url, error
            )
            result = SyncResult(ok=False, commit=repo.commit, error=error)
        else:
            result = SyncResult(ok=True, commit=sha, changed=changed, report=report)
            logger.info("git sync of %s: %s", repo.url, result.summary())
            if changed:
                audit_record(
                    audit=audit,
                    action="git.sync",
                    target=repo,
                    details={"commit": sha, "previous_commit": repo.commit},
                )
        finally:
            # A request that came in during the sync is kept: it may want a newer commit.
            GitRepository.objects.filter(pk=repo.pk, sync_requested_at=requested_at).update(
                sync_requested_at=None, sync_requested_by=""
            )
        if commits_in_use is not None:
            result.pruned = _prune(commits_in_use)
    return result


def _prune(commits_in_use: CommitsInUse) -> list[str]:
    # The caller holds the lease: no sync is writing a checkout or switching meanwhile.
    repo = repository_get()
    keep = commits_in_use() | {checkouts.current_commit()}
    if repo is not None:
        keep |= {repo.commit, repo.previous_commit}
    removed = []
    for name in checkouts.checkout_names():
        if name in keep:
            continue
        try:
            checkouts.remove(name)
        except OSError as exc:
            logger.warning("cannot remove old checkout %s: %s", name, exc)
            continue
        removed.append(name)
    if removed:
        logger.info("removed %d old checkout(s): %s", len(removed), ", ".join(removed))
    return removed


def checkouts_prune(*, holder: str, commits_in_use: CommitsInUse) -> list[str]:
    """Remove checkouts that are neither current, nor the one before, nor used by a run (or
    about to be: see runs_app.services.run_commits_in_use). Skipped while a sync runs."""
    if repository_get() is None:
        return []
    with _lease(holder) as taken:
        return _prune(commits_in_use) if taken else []


def repository_credentials_rotate(*, audit: AuditContext | None = None) -> int:
    """Re-encrypt the stored credentials with the current key (`rotatesecrets`); how many."""
    repo = repository_get()
    if repo is None:
        return 0
    fields = ("token_encrypted", "ssh_private_key_encrypted", "webhook_secret_encrypted")
    rotated = {name: crypto.rotate(getattr(repo, name)) for name in fields if getattr(repo, name)}
    if rotated:
        with transaction.atomic():
            GitRepository.objects.filter(pk=repo.pk).update(**rotated)
            audit_record(
                audit=audit, action="git.rotate", target=repo, details={"count": len(rotated)}
            )
    return len(rotated)
