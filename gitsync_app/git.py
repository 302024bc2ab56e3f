"""The `git` binary, driven for git sync: fetch one branch into a bare repository, check a
commit out into a fresh directory. No database.

Why the binary and not a library: `git` and `ssh` are on every machine Fast-Flow runs on, speak
every transport and authentication a forge offers (smart HTTP with tokens, SSH with deploy keys
and host-key checks, file://) exactly as operators know them from the command line, and their
errors are the ones a forge's documentation explains. dulwich would still run `ssh` (or need
paramiko), GitPython wraps this same binary, pygit2 needs libgit2 built with libssh2.
docs/git-sync.md says more.

Credentials never reach a command line or a file in the repository:
- HTTPS token: `GIT_ASKPASS` names a small script that prints the username and the token from
  the environment of that one git process (not its argv, so `ps` does not show them); every
  credential helper is switched off (`-c credential.helper=`), so none stores the token.
- SSH deploy key: written 0600 into a private temporary directory (in /dev/shm when there is
  one: memory, not disk) for one command, with `GIT_SSH_COMMAND` pinning the host keys
  (`StrictHostKeyChecking=yes`, our known_hosts file only, no agent, no ~/.ssh/config).
- The remote URL is passed per command; the repository has no remote, so `.git/config` holds
  no URL and no credential.
Git runs hermetically: no system or global config, no terminal prompts, only the protocols git
sync supports (https, http, ssh, file), a timeout per command.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fastflow_site.datadir import private_dir

SYNCED_REF = "refs/fastflow/synced"
ALLOWED_PROTOCOLS = "https:http:ssh:file"
PASSTHROUGH_ENV = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
)
ERROR_TAIL_LINES = 8
ASKPASS_SCRIPT = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$FASTFLOW_GIT_USERNAME" ;;
  *) printf '%s\\n' "$FASTFLOW_GIT_TOKEN" ;;
esac
"""


class GitError(Exception):
    """A git command failed; the message says why in words and is free of credentials."""


@dataclass(frozen=True)
class Credentials:
    method: str = "none"  # none | token | ssh_key (AuthMethod values)
    username: str = ""
    token: str = ""
    private_key: str = ""
    known_hosts: str = ""

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.token, self.private_key) if s)


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author: str
    committed_at: datetime
    subject: str


@dataclass
class _Session:
    """What one authenticated command needs: extra environment and `-c` options."""

    env: dict[str, str] = field(default_factory=dict)
    config: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = ()


def _private_tempdir() -> str:
    # mkdtemp makes a 0700 directory with an unguessable name, wherever it is.
    shm = Path("/dev/shm")  # noqa: S108
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None
    return tempfile.mkdtemp(prefix="fastflow-git-", dir=base)  # 0700


def _explain(stderr: str) -> str:
    """The one sentence an operator needs, for the failures a sync meets in practice."""
    text = stderr.lower()
    if "host key verification failed" in text or "remote host identification has changed" in text:
        return (
            "SSH host key verification failed: the server's host key is not among the pinned "
            "ones (a changed server key, or a machine in the middle); nothing was fetched"
        )
    if "permission denied (publickey" in text:
        return "the SSH server refused the deploy key (is it added to the repository?)"
    if (
        "authentication failed" in text
        or "could not read username" in text
        or "could not read password" in text
        or "terminal prompts disabled" in text
        or "the requested url returned error: 401" in text
        or "the requested url returned error: 403" in text
    ):
        return "authentication failed: the server refused the token (or needs one)"
    if "couldn't find remote ref" in text:
        return "the branch does not exist in the repository"
    if "could not resolve host" in text or "name or service not known" in text:
        return "the repository's host name cannot be resolved"
    if "connection refused" in text or "timed out" in text or "no route to host" in text:
        return "the repository's server cannot be reached"
    if (
        "does not appear to be a git repository" in text
        or "repository not found" in text
        or "returned error: 404" in text
    ):
        return "no repository at that URL (or no access to it)"
    return "git failed"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _readable_by_all(root: Path) -> None:
    """Add read (and, on directories, search) permission for everyone: the Docker runner reads
    the checkout as an unprivileged uid, whatever the engine's umask was."""
    for folder, dirs, files in os.walk(root):
        for name, bits in [*((d, 0o755) for d in dirs), *((f, 0o644) for f in files)]:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | bits)  # noqa: S103 - see docstring
    os.chmod(root, 0o755)  # noqa: S103


class Git:
    """git commands against the bare repository at `repo_dir`."""

    def __init__(self, *, repo_dir: Path, timeout: float) -> None:
        self.repo_dir = Path(repo_dir)
        self.timeout = timeout

    # --- running git --------------------------------------------------------------------------

    def _base_env(self, home: str) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        env.update(
            {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": home,
                "LC_ALL": "C",  # the messages _explain() reads are the untranslated ones
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
                # No ssh for a URL that is not an SSH one, whatever the config would pick.
                "GIT_SSH_COMMAND": "false",
            }
        )
        return env

    def _run(
        self,
        args: list[str],
        *,
        session: _Session | None = None,
        env: dict[str, str] | None = None,
        what: str,
    ) -> str:
        session = session or _Session()
        home = session.env.get("HOME") or tempfile.gettempdir()
        full_env = {**self._base_env(home), **session.env, **(env or {})}
        command = ["git", *session.config, f"--git-dir={self.repo_dir}", *args]
        try:
            process = subprocess.Popen(
                command,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # on a timeout, ssh and git-remote-https die with it
            )
        except OSError as exc:
            raise GitError(f"{what}: cannot run git ({exc.strerror}); is git installed?") from None
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise GitError(
                f"{what}: no answer within {self.timeout:g} s (FASTFLOW_GIT_TIMEOUT_SECONDS)"
            ) from None
        if process.returncode != 0:
            stderr = _scrub(err.decode(errors="replace"), session.secrets)
            tail = "\n".join(stderr.strip().splitlines()[-ERROR_TAIL_LINES:])
            raise GitError(f"{what}: {_explain(stderr)}\n{tail}".rstrip())
        return out.decode(errors="replace")

    @contextlib.contextmanager
    def _authenticated(self, credentials: Credentials) -> Iterator[_Session]:
        tmp = _private_tempdir()
        try:
            session = _Session(env={"HOME": tmp}, secrets=credentials.secrets)
            if credentials.method == "token":
                askpass = Path(tmp) / "askpass"
                askpass.write_text(ASKPASS_SCRIPT)
                askpass.chmod(stat.S_IRWXU)
                session.env.update(
                    GIT_ASKPASS=str(askpass),
                    FASTFLOW_GIT_USERNAME=credentials.username or "x-access-token",
                    FASTFLOW_GIT_TOKEN=credentials.token,
                )
                # Empty the helper list: a system helper ("store") must not keep the token.
                session.config = ["-c", "credential.helper="]
            elif credentials.method == "ssh_key":
                key = Path(tmp) / "deploy_key"
                fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(credentials.private_key)
                known = Path(tmp) / "known_hosts"
                known.write_text(credentials.known_hosts)
                session.env["GIT_SSH_COMMAND"] = " ".join(
                    [
                        "ssh -F /dev/null",
                        f"-i {shlex.quote(str(key))}",
                        f"-o UserKnownHostsFile={shlex.quote(str(known))}",
                        "-o GlobalKnownHostsFile=/dev/null",
                        "-o StrictHostKeyChecking=yes",
                        "-o IdentitiesOnly=yes -o IdentityAgent=none",
                        "-o BatchMode=yes -o PasswordAuthentication=no",
                        "-o KbdInteractiveAuthentication=no",
                        "-o CheckHostIP=no -o UpdateHostKeys=no",
                        f"-o ConnectTimeout={max(int(self.timeout), 1)}",
                    ]
                )
                session.env["GIT_SSH_VARIANT"] = "ssh"
            yield session
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- commands -------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the bare repository if it does not exist (it never gets a remote)."""
        if (self.repo_dir / "HEAD").is_file():
            return
        private_dir(self.repo_dir)  # 0700 like the data dir: it may hold a private repository
        self._run(["init", "--bare", "--quiet"], what="creating the local repository")

    def fetch(self, *, url: str, branch: str, credentials: Credentials) -> str:
        """Fetch `branch` from `url`; returns the commit it points to."""
        self.init()
        refspec = f"+refs/heads/{branch}:{SYNCED_REF}"
        with self._authenticated(credentials) as session:
            self._run(
                ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", url, refspec],
                session=session,
                what=f"fetching branch '{branch}'",
            )
        return self._run(
            ["rev-parse", "--verify", "--quiet", f"{SYNCED_REF}^{{commit}}"],
            what="reading the fetched commit",
        ).strip()

    def commit_info(self, sha: str) -> CommitInfo:
        out = self._run(
            ["log", "-1", "--format=%H%x00%an%x00%cI%x00%s", sha, "--"],
            what="reading the commit",
        )
        full, author, date, subject = out.rstrip("\n").split("\x00", 3)
        return CommitInfo(
            sha=full, author=author, committed_at=datetime.fromisoformat(date), subject=subject
        )

    def is_directory(self, sha: str, path: str) -> bool:
        try:
            kind = self._run(["cat-file", "-t", f"{sha}:{path}"], what="reading the tree")
        except GitError:
            return False
        return kind.strip() == "tree"

    def checkout(self, sha: str, dest: Path) -> None:
        """Write the files of `sha` into `dest` (created; no .git inside), readable by all:
        the Docker runner reads them as another user."""
        dest = Path(dest)
        # The checkouts folder is private; each checkout in it is readable by all (a bind mount
        # reaches it without passing through its parents).
        private_dir(dest.parent)
        dest.mkdir()
        with tempfile.TemporaryDirectory(prefix="fastflow-git-index-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._run(["read-tree", sha], env=index, what="reading the commit's tree")
            self._run(
                [f"--work-tree={dest}", "checkout-index", "--all", "--force"],
                env=index,
                what="writing the checkout",
            )
        _readable_by_all(dest)
