"""SSH pieces of git sync: which host a URL names, deploy keys, pinned host keys.

Pure functions plus `host_keys_scan` (runs `ssh-keyscan`); no database.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# `user@host:path` (scp-like); not `host://...`, not a Windows drive letter.
SCP_LIKE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[A-Za-z0-9.-]+):(?!//)(?P<path>.+)")
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
DEPLOY_KEY_COMMENT = "fastflow-deploy-key"


class HostKeyError(ValueError):
    """A known_hosts text that ssh could not use (the message names the line)."""


@dataclass(frozen=True)
class SshHost:
    host: str
    port: int

    @property
    def pattern(self) -> str:
        """How known_hosts names this host (`[host]:port` off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def ssh_host(url: str) -> SshHost | None:
    """The SSH server of `ssh://…` and `user@host:path` URLs; None for any other URL."""
    if url.startswith("ssh://"):
        parts = urlsplit(url)
        if not parts.hostname:
            return None
        try:
            port = parts.port or 22
        except ValueError:
            return None
        return SshHost(host=parts.hostname, port=port)
    if "://" in url:
        return None
    match = SCP_LIKE.fullmatch(url)
    return SshHost(host=match["host"], port=22) if match else None


def deploy_key_generate() -> tuple[str, str]:
    """A new Ed25519 key pair: (private key in OpenSSH format, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, f"{public.decode()} {DEPLOY_KEY_COMMENT}"


def deploy_key_public_half(private_key: str) -> str:
    """The public key line of a pasted private key; ValueError if it is not one."""
    try:
        key = serialization.load_ssh_private_key(private_key_normalise(private_key).encode(), None)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"not an unencrypted OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----); {exc}"
        ) from None
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} {DEPLOY_KEY_COMMENT}"


def private_key_normalise(private_key: str) -> str:
    # ssh refuses a key file with CRLF line ends or without the final newline.
    return private_key.replace("\r\n", "\n").strip() + "\n"


def _fingerprint(blob_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(blob_b64, validate=True)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_normalise(text: str, host: SshHost) -> str:
    """Pinned host keys as a known_hosts file for `host`.

    Accepts known_hosts lines (`host keytype key`, as `ssh-keyscan` prints them and forges
    publish them) and bare `keytype key` lines, which are pinned for `host`. Comments and blank
    lines are dropped. Raises HostKeyError naming the first line that is neither.
    """
    lines: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0] in KEY_TYPES:
            fields = [host.pattern, *fields]
        if len(fields) < 3 or fields[1] not in KEY_TYPES:
            raise HostKeyError(
                f"line {number} is not a host key (expected '[host] keytype base64-key')"
            )
        try:
            _fingerprint(fields[2])
        except ValueError:
            raise HostKeyError(f"line {number}: the key is not valid base64") from None
        lines.append(" ".join(fields[:3]))
    return "\n".join(lines) + ("\n" if lines else "")


def host_key_fingerprints(known_hosts: str) -> list[str]:
    """`keytype SHA256:…` of each line, for people to compare with what the forge publishes."""
    found = []
    for line in known_hosts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] in KEY_TYPES:
            try:
                found.append(f"{fields[1]} {_fingerprint(fields[2])} ({fields[0]})")
            except ValueError:
                continue
    return found


def host_keys_scan(host: SshHost, *, timeout: float) -> str:
    """The host keys the server offers now (`ssh-keyscan`), as known_hosts lines; "" when it
    cannot be reached. Only ever shown for an operator to confirm, never trusted by itself."""
    try:
        process = subprocess.Popen(
            ["ssh-keyscan", "-T", str(max(int(timeout), 1)), "-p", str(host.port), host.host],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return ""
    try:
        out, _ = process.communicate(timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return ""
    lines = [
        line
        for line in out.decode(errors="replace").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return "\n".join(sorted(lines)) + ("\n" if lines else "")
