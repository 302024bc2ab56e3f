"""Refusals of the git sync services (the one ServiceError contract)."""

from __future__ import annotations

from fastflow_site.errors import ServiceError


class GitSyncError(ServiceError):
    code = "git_sync_error"


class GitNotConfigured(GitSyncError):
    code = "git_not_configured"
    http_status = 409


class GitConfigInvalid(GitSyncError):
    """Bad configuration input; `fields` names each field and its problem."""

    code = "invalid"


class GitSyncBusy(GitSyncError):
    code = "git_sync_busy"
    http_status = 409


class GitSyncFailed(GitSyncError):
    """The sync ran and failed (fetch, checkout, host key); the last good checkout stays."""

    code = "git_sync_failed"
    http_status = 502
