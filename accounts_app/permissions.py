"""Roles → permissions, in one place.

Django's admin asks `user.has_perm("<app>.<action>_<model>")`; the DRF permission classes
(`accounts_app.api_permissions`) and the webhook view use the same tables. There are no per-user
or per-group permissions, and ADMIN may do everything, including on models added later.
"""

from __future__ import annotations

from accounts_app.models import Role

# Models each non-admin role may see at all in the admin / API (app_label.model_name).
# READONLY never sees secret values, users, invitations or sessions: its own API tokens live on
# the account page (/account/), not in the Session admin.
READABLE: dict[str, set[str]] = {
    Role.READONLY: {
        "pipelines_app.pipeline",
        "runs_app.pipelinerun",
        "runs_app.scheduledjob",
    },
}
READABLE[Role.WRITE] = set(READABLE[Role.READONLY])

# Model actions (add/change/delete) each non-admin role may take, beyond viewing.
MODEL_ACTIONS: dict[str, dict[str, set[str]]] = {
    Role.READONLY: {},
    Role.WRITE: {
        # Only the `enabled` flag: the pipeline admin/API limit which fields are editable.
        "pipelines_app.pipeline": {"change"},
        "runs_app.pipelinerun": {"change"},
        "runs_app.scheduledjob": {"add", "change", "delete"},
    },
}

# Actions that are not model CRUD.
ACTIONS: dict[str, set[str]] = {
    Role.READONLY: set(),
    Role.WRITE: {
        "run",
        "cancel",
        "retry",
        "sync",
        "edit_schedule",
        "toggle_pipeline",
        # Encrypt a value for pipeline.json's encrypted_env (nothing is stored or revealed).
        "encrypt_value",
    },
}
ADMIN_ONLY_ACTIONS = {"manage_users", "manage_secrets", "manage_tokens"}
# Kept for readers who want the full list; ADMIN is not limited to it.
ACTIONS[Role.ADMIN] = ACTIONS[Role.WRITE] | ADMIN_ONLY_ACTIONS


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


def role_can_change(role: str, model_label: str) -> bool:
    """True if the role may modify `model_label` rows in any way (add, change or delete)."""
    if role == Role.ADMIN:
        return True
    return bool(MODEL_ACTIONS.get(role, {}).get(model_label.lower()))


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
