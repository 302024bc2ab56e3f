"""Who is acting and through which interface: built by each interface, handed to services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit_app.models import ActorType, Interface


@dataclass(frozen=True)
class AuditContext:
    interface: str
    actor_type: str
    user: Any = None  # the acting User, if a person (directly or by token)
    name: str = ""  # what to show: username, "alice (token ci)", "webhook nightly", ...
    ip: str | None = None

    @classmethod
    def from_request(cls, request: Any, *, interface: str) -> AuditContext:
        """A person using the admin or the API (by session or by API token)."""
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return cls(interface=interface, actor_type=ActorType.SYSTEM, ip=client_ip(request))
        # DRF puts the API token's row (an accounts_app ApiToken) on request.auth; a browser
        # session leaves it None. Read by attribute: this app sits below accounts_app.
        token = getattr(request, "auth", None)
        if token is not None and hasattr(token, "expires_at"):
            label = getattr(token, "name", "") or str(token.pk)
            return cls(
                interface=interface,
                actor_type=ActorType.TOKEN,
                user=user,
                name=f"{user.username} (token {label})",
                ip=client_ip(request),
            )
        return cls(
            interface=interface,
            actor_type=ActorType.USER,
            user=user,
            name=user.username,
            ip=client_ip(request),
        )

    @classmethod
    def login(cls, request: Any, *, user: Any = None, name: str = "") -> AuditContext:
        return cls(
            interface=Interface.LOGIN,
            actor_type=ActorType.USER,
            user=user,
            name=name or getattr(user, "username", ""),
            ip=client_ip(request),
        )

    @classmethod
    def webhook(cls, request: Any, *, pipeline_name: str) -> AuditContext:
        return cls(
            interface=Interface.WEBHOOK,
            actor_type=ActorType.WEBHOOK,
            name=f"webhook {pipeline_name}",
            ip=client_ip(request),
        )

    @classmethod
    def schedule(cls, *, job_id: object) -> AuditContext:
        return cls(
            interface=Interface.ENGINE, actor_type=ActorType.SCHEDULE, name=f"schedule {job_id}"
        )

    @classmethod
    def engine(cls, *, name: str = "engine") -> AuditContext:
        return cls(interface=Interface.ENGINE, actor_type=ActorType.ENGINE, name=name)

    @classmethod
    def command(cls, command: str, *, user: Any = None) -> AuditContext:
        return cls(
            interface=Interface.COMMAND,
            actor_type=ActorType.USER if user is not None else ActorType.SYSTEM,
            user=user,
            name=getattr(user, "username", "") or f"manage.py {command}",
        )


SYSTEM = AuditContext(interface=Interface.SYSTEM, actor_type=ActorType.SYSTEM, name="system")


def client_ip(request: Any) -> str | None:
    """The peer address. Behind a reverse proxy that is the proxy (X-Forwarded-For can be
    forged by any client, so it is not trusted here)."""
    meta = getattr(request, "META", None) or {}
    return meta.get("REMOTE_ADDR") or None
