"""Real git remotes for the git sync tests: a repository served over file://, over SSH by a
real `sshd` on 127.0.0.1, and over smart HTTP by `git http-backend` behind a small CGI server
with basic auth. Nothing is faked: the engine's git talks to these like to a forge."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitsync_app.services import RepositoryConfig, repository_configure, repository_sync
from tests.conftest import IN_CI

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada Pipeline",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Pipeline",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_IDENTITY},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stdout.strip()


class Origin:
    """A repository with a working tree that tests commit to, like a developer pushing."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        path.mkdir(parents=True)
        git(path, "init", "--quiet", "-b", branch)

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (or, with None, delete) files and commit them; returns the commit id."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")


def configure(url: str, **fields: object) -> None:
    repository_configure(config=RepositoryConfig(url=url, **fields), requested_by="test")


def sync_now(holder: str = "test"):
    result = repository_sync(holder=holder)
    assert result.ok, result.error
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# --- SSH ---------------------------------------------------------------------------------------

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> bool:
    return os.path.isfile(SSHD) and shutil.which("ssh") is not None


@dataclass
class SshServer:
    """A real OpenSSH server on 127.0.0.1 with its own host key, accepting one client key and
    running the client's git-upload-pack as the current user."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True)
        self.host_key = self.root / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True
        )
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text("")
        os.chmod(self.authorized_keys, 0o600)

    @property
    def user(self) -> str:
        import getpass

        return getpass.getuser()

    def url(self, repo_path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo_path}"

    def known_hosts_line(self) -> str:
        key = (self.root / "ssh_host_ed25519_key.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}"

    def authorize(self, public_key: str) -> None:
        self.authorized_keys.write_text(public_key.strip() + "\n")

    def start(self) -> SshServer:
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        # sshd needs its privilege-separation directory (made by the service scripts normally).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.log = self.root / "sshd.log"
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port)
        except AssertionError:
            self.stop()
            raise AssertionError(f"sshd did not start:\n{self.log.read_text()}") from None
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def require_sshd() -> None:
    if sshd_available():
        return
    if IN_CI:
        pytest.fail("CI=true but sshd (openssh-server) is missing; .ci/run installs it")
    pytest.skip("sshd (Debian openssh-server) is not installed")


# --- smart HTTP --------------------------------------------------------------------------------

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


class _GitCgiHandler(BaseHTTPRequestHandler):
    """One request to `git http-backend` as CGI; `self.server.owner` is the SmartHttpServer."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        owner: SmartHttpServer = self.server.owner  # type: ignore[attr-defined]
        time.sleep(owner.delay)
        auth = self.headers.get("Authorization", "")
        owner.seen_auth.append(auth)
        owner.seen_paths.append(self.path)
        if owner.user and auth != owner.wanted_auth():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        done = subprocess.run(
            [HTTP_BACKEND],
            input=body,
            env=self._cgi_env(owner, body),
            capture_output=True,
            check=False,
        )
        self._answer(done.stdout)

    def _cgi_env(self, owner: SmartHttpServer, body: bytes) -> dict[str, str]:
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(owner.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": owner.user or "anonymous",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        return env

    def _answer(self, cgi_output: bytes) -> None:
        """The CGI answer (headers, a Status line, the body) as an HTTP response."""
        head, _, payload = cgi_output.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class SmartHttpServer:
    """`git http-backend` behind a threaded CGI server on 127.0.0.1. With `user`/`password`,
    every request needs that basic auth (like a forge's token), else 401. `seen_auth` records
    each request's Authorization header and `seen_paths` its path."""

    def __init__(
        self, project_root: Path, *, user: str = "", password: str = "", delay: float = 0.0
    ) -> None:
        self.project_root = project_root
        self.user, self.password = user, password
        self.delay = delay  # seconds each answer waits (to observe the client meanwhile)
        self.seen_auth: list[str] = []
        self.seen_paths: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _GitCgiHandler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def wanted_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def url(self, repo_name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo_name}"

    def start(self) -> SmartHttpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
