"""Roles and what each may do, in one place.

Django's admin asks `user.has_perm("<app>.<action>_<model>")` (answered by `role_has_perm`), the
DRF permission classes (`accounts_app.api_permissions`) ask `role_at_least`, and the admin's
non-CRUD buttons ask `role_can`. Webhooks carry no user and no role: the key in their URL is the
credential (`runs_app/webhooks.py`). There are no per-user or per-group permissions, and ADMIN may
do everything, including on models added later.

This module imports no model, so `accounts_app.models` can use `Role` without an import circle.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ADMIN = "ADMIN"
    WRITE = "WRITE"
    READONLY = "READONLY"


# Higher = more power; every role may do what the roles below it may (the tables below keep that).
RANK: dict[str, int] = {Role.READONLY: 0, Role.WRITE: 1, Role.ADMIN: 2}

# Models each non-admin role may see at all in the admin / API (app_label.model_name).
# READONLY never sees secret values, users, invitations or API tokens: its own API tokens live on
# the account page (/account/), not in the token admin.
READABLE: dict[str, set[str]] = {
    Role.READONLY: {
        "pipelines_app.pipeline",
        "runs_app.pipelinerun",
        "runs_app.scheduledjob",
        # The sync state (commit, last error); credentials are never shown to anyone.
        "gitsync_app.gitrepository",
    },
}
READABLE[Role.WRITE] = set(READABLE[Role.READONLY])

# Model actions (add/change/delete) each non-admin role may take, beyond viewing.
MODEL_ACTIONS: dict[str, dict[str, set[str]]] = {
    Role.READONLY: {},
    Role.WRITE: {
        # Only the `enabled` flag: the pipeline admin/API limit which fields are editable.
        "pipelines_app.pipeline": {"change"},
        # Runs are only viewed (cancel and retry are ACTIONS): Django's view-only run page.
        "runs_app.scheduledjob": {"add", "change", "delete"},
    },
}

# Actions that are not model CRUD (the admin's buttons); ADMIN may take them all.
ACTIONS: dict[str, set[str]] = {
    Role.READONLY: set(),
    Role.WRITE: {
        "run",
        "cancel",
        "retry",
        "sync",
        "toggle_pipeline",
        # Encrypt a value for pipeline.json's encrypted_env (nothing is stored or revealed).
        "encrypt_value",
    },
}


def role_at_least(role: str, minimum: str) -> bool:
    """Does `role` rank at or above `minimum`? An unknown role ranks below every role."""
    return RANK.get(role, -1) >= RANK[minimum]


def role_can_view(role: str, model_label: str) -> bool:
    if role == Role.ADMIN:
        return True
    return model_label.lower() in READABLE.get(role, set())


def role_can_do(role: str, action: str, model_label: str) -> bool:
    """May `role` add / change / delete / view rows of `model_label`?"""
    if role == Role.ADMIN:
        return True
    if action == "view":
        return role_can_view(role, model_label)
    return action in MODEL_ACTIONS.get(role, {}).get(model_label.lower(), set())


def role_can(role: str, action: str) -> bool:
    if role == Role.ADMIN:
        return True
    return action in ACTIONS.get(role, set())


def role_has_perm(role: str, perm: str) -> bool:
    """Answer Django's `app_label.codename` permission strings from the role tables."""
    app_label, _, codename = perm.partition(".")
    action, _, model_name = codename.partition("_")
    if action in {"view", "add", "change", "delete"} and model_name:
        return role_can_do(role, action, f"{app_label}.{model_name}")
    return role_can(role, codename)


def role_has_module_perms(role: str, app_label: str) -> bool:
    if role == Role.ADMIN:
        return True
    return any(label.startswith(f"{app_label}.") for label in READABLE.get(role, set()))
