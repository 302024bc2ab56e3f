"""The SSRF guard for notification sends: no private, loopback, link-local or otherwise
non-public address unless FASTFLOW_NOTIFY_ALLOWED_HOSTS names it.

The check sits where every sender of ours resolves a name: `socket.getaddrinfo`, which
requests/urllib3 and smtplib call for each connection. The addresses it returns are the ones
then connected to, so a name that resolves differently on a second lookup (DNS rebinding)
cannot slip past, whatever the Apprise plugin does with its URL. The guard is active only in
a thread inside `guarded()`; everywhere else the wrapper hands straight through.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_active = threading.local()
_install_lock = threading.Lock()
_original_getaddrinfo = socket.getaddrinfo


class BlockedAddress(OSError):
    """A notification target resolved to an address the guard does not allow."""


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def parse_allowlist(entries: list[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """Host names and IP networks (`10.0.0.0/8`, `127.0.0.1`); raises ValueError naming a bad
    entry."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if not all(part and (part.isalnum() or "-" in part or "_" in part)
                   for part in entry.rstrip(".").split(".")):  # fmt: skip
            raise ValueError(f"{raw!r} is neither a host name nor an IP address or network")
        names.add(entry.rstrip("."))
    return frozenset(names), tuple(networks)


@dataclass(frozen=True)
class Policy:
    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def from_entries(cls, entries: list[str]) -> Policy:
        names, networks = parse_allowlist(entries)
        return cls(names=names, networks=networks)

    def allows(self, host: str, ip: IPAddress) -> bool:
        if is_public(ip):
            return True
        if host.lower().rstrip(".") in self.names:
            return True
        return any(ip in network for network in self.networks if network.version == ip.version)


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
    results = _original_getaddrinfo(host, port, *args, **kwargs)
    policy: Policy | None = getattr(_active, "policy", None)
    if policy is None:
        return results
    name = host.decode() if isinstance(host, bytes) else str(host)
    for *_, sockaddr in results:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not policy.allows(name, ip):
            raise BlockedAddress(
                f"refused to connect to {name} ({ip}): not a public address; "
                "list it in FASTFLOW_NOTIFY_ALLOWED_HOSTS to allow it"
            )
    return results


def _install() -> None:
    with _install_lock:
        if socket.getaddrinfo is not _guarded_getaddrinfo:
            socket.getaddrinfo = _guarded_getaddrinfo


@contextmanager
def guarded(policy: Policy) -> Iterator[None]:
    """Within the block, connections from this thread only reach addresses `policy` allows."""
    _install()
    previous = getattr(_active, "policy", None)
    _active.policy = policy
    try:
        yield
    finally:
        _active.policy = previous
