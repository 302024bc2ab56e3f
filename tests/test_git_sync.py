"""Git sync against real remotes: file://, smart HTTP with a token, SSH with a deploy key."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from gitsync_app.errors import GitConfigInvalid
from gitsync_app.models import AuthMethod, GitRepository
from gitsync_app.services import (
    RepositoryConfig,
    checkouts_prune,
    repository_config_errors,
    repository_pin_offered_host_keys,
    repository_sync,
)
from pipelines_app import checkouts
from pipelines_app.models import Pipeline
from runs_app.models import RunStatus
from runs_app.services import run_commits_in_use
from tests.helpers_admin import make_run
from tests.helpers_git import (
    Origin,
    SmartHttpServer,
    SshServer,
    configure,
    require_sshd,
    sync_now,
)

pytestmark = pytest.mark.django_db

HELLO = {
    "hello/main.py": "print(open('version.txt').read())\n",
    "hello/version.txt": "v1",
    "hello/pipeline.json": '{"description": "says hello"}',
}


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path / "origin")


def repo() -> GitRepository:
    return GitRepository.objects.get()


def pipelines_root() -> Path:
    return Path(settings.PIPELINES_DIR)


def test_it_checks_out_the_branch_and_points_the_pipelines_directory_at_it(origin):
    sha = origin.commit(HELLO, "first pipeline")
    configure(origin.url)

    result = sync_now()

    assert result.changed and result.commit == sha
    assert pipelines_root().is_symlink()
    assert pipelines_root().resolve() == checkouts.checkout_path(sha).resolve()
    assert (pipelines_root() / "hello" / "version.txt").read_text() == "v1"
    assert not (checkouts.checkout_path(sha) / ".git").exists()
    pipeline = Pipeline.objects.get()
    assert (pipeline.pipeline_name, pipeline.git_commit, pipeline.description) == (
        "hello",
        sha,
        "says hello",
    )
    state = repo()
    assert (state.commit, state.commit_message, state.commit_author) == (
        sha,
        "first pipeline",
        "Ada Pipeline",
    )
    assert state.synced_at is not None and state.last_error == ""
    assert state.sync_requested_at is None  # the configuration's request was served
    assert state.lease_holder == ""


def test_the_git_folders_are_private_and_only_the_checkouts_readable_by_all(origin):
    sha = origin.commit(HELLO)
    configure(origin.url)
    previous = os.umask(0o022)  # a usual account's umask: without our modes, folders are 0755
    try:
        sync_now()
    finally:
        os.umask(previous)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    git_dir = Path(settings.FASTFLOW_GIT_DIR)
    # Like the data dir: the bare repository may hold a private repository's whole history.
    assert mode(git_dir) == mode(git_dir / "repo.git") == mode(checkouts.checkouts_dir()) == 0o700
    # A checkout is bind-mounted into Docker runs, read there as another uid.
    checkout = checkouts.checkout_path(sha)
    assert mode(checkout) == mode(checkout / "hello") == 0o755
    assert mode(checkout / "hello" / "main.py") == 0o644


def test_a_new_commit_gets_its_own_checkout_and_discovery_follows(origin):
    first = origin.commit(HELLO)
    configure(origin.url)
    sync_now()
    second = origin.commit(
        {"hello/version.txt": "v2", "report/main.py": "print('report')\n"}, "add report"
    )

    result = sync_now()

    assert result.changed and result.commit == second
    assert pipelines_root().resolve() == checkouts.checkout_path(second).resolve()
    # The first checkout is untouched: a run that started on it still reads its files.
    assert (checkouts.checkout_path(first) / "hello" / "version.txt").read_text() == "v1"
    assert (pipelines_root() / "hello" / "version.txt").read_text() == "v2"
    assert set(Pipeline.objects.values_list("pipeline_name", "git_commit")) == {
        ("hello", second),
        ("report", second),
    }
    assert (repo().commit, repo().previous_commit) == (second, first)
    # Nothing new: the same commit, no switch.
    again = sync_now()
    assert again.ok and not again.changed and again.commit == second


def test_a_removed_pipeline_is_marked_missing(origin):
    origin.commit({**HELLO, "other/main.py": "print(1)\n"})
    configure(origin.url)
    sync_now()
    origin.commit({"other/main.py": None})

    sync_now()

    assert Pipeline.objects.get(pipeline_name="other").is_missing
    assert not Pipeline.objects.get(pipeline_name="hello").is_missing


def test_a_failed_sync_keeps_the_last_good_checkout_and_says_why(origin):
    good = origin.commit(HELLO)
    configure(origin.url)
    sync_now()
    configure(origin.url, branch="does-not-exist")

    result = repository_sync(holder="test")

    assert not result.ok
    assert "branch does not exist" in result.error
    state = repo()
    assert state.commit == good and "branch does not exist" in state.last_error
    assert pipelines_root().resolve() == checkouts.checkout_path(good).resolve()
    assert Pipeline.objects.get().git_commit == good and not Pipeline.objects.get().is_missing
    assert state.lease_holder == "" and state.sync_requested_at is None

    configure(origin.url, branch="main")
    sync_now()
    assert repo().last_error == ""


def test_an_unreachable_repository_fails_with_the_reason(tmp_path):
    configure(f"file://{tmp_path / 'nothing-here'}")

    result = repository_sync(holder="test")

    assert not result.ok
    assert "no repository at that URL" in result.error
    assert not pipelines_root().is_symlink()  # the plain (empty) directory stays


def test_a_pipelines_directory_with_content_is_never_replaced(origin, make_pipeline_dir):
    make_pipeline_dir("local_only")
    origin.commit(HELLO)
    configure(origin.url)

    result = repository_sync(holder="test")

    assert not result.ok
    assert "is a directory with content" in result.error
    assert (pipelines_root() / "local_only" / "main.py").is_file()
    assert not pipelines_root().is_symlink()


def test_a_reader_that_resolves_the_directory_sees_one_whole_commit(origin):
    """The symlink moves with one rename(): a reader resolving the directory (as discovery
    does) gets one checkout and reads all of its files from it, while syncs switch."""
    origin.commit({"p/main.py": "", "p/a.txt": "0", "p/b.txt": "0"})
    configure(origin.url)
    sync_now()
    stop = threading.Event()
    mixed: list[tuple[str, str]] = []
    reads = 0

    def read() -> None:
        nonlocal reads
        while not stop.is_set():
            root = pipelines_root().resolve()
            a = (root / "p" / "a.txt").read_text()
            b = (root / "p" / "b.txt").read_text()
            reads += 1
            if a != b:
                mixed.append((a, b))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in range(1, 6):
            origin.commit({"p/a.txt": str(version), "p/b.txt": str(version)})
            sync_now()
    finally:
        stop.set()
        reader.join()

    assert reads > 0
    assert mixed == []
    assert (pipelines_root() / "p" / "a.txt").read_text() == "5"


def test_a_subfolder_of_the_repository_can_hold_the_pipelines(origin):
    sha = origin.commit({"README.md": "docs", "pipelines/hello/main.py": "print(1)\n"})
    configure(origin.url, subdir="pipelines/")

    sync_now()

    assert pipelines_root().resolve() == (checkouts.checkout_path(sha) / "pipelines").resolve()
    assert list(Pipeline.objects.values_list("pipeline_name", flat=True)) == ["hello"]
    assert checkouts.root_at(sha) == checkouts.checkout_path(sha) / "pipelines"

    configure(origin.url, subdir="elsewhere")
    result = repository_sync(holder="test")
    assert not result.ok and "has no folder 'elsewhere'" in result.error


def test_old_checkouts_are_removed_once_no_run_uses_them(origin):
    configure(origin.url)
    shas = []
    for version in range(4):
        shas.append(origin.commit({"hello/main.py": f"print({version})\n"}))
        sync_now()
    hello = Pipeline.objects.get()
    running = make_run(hello, RunStatus.RUNNING, git_commit=shas[0])
    finished = make_run(hello, RunStatus.SUCCESS, git_commit=shas[1])

    removed = checkouts_prune(holder="engine", commits_in_use=run_commits_in_use)

    # Kept: the running run's, the one before the current, the current (all rows point there).
    assert removed == [shas[1]]
    assert finished.git_commit not in checkouts.checkout_names()
    assert set(checkouts.checkout_names()) == {shas[0], shas[2], shas[3]}
    running.status = RunStatus.SUCCESS
    running.save(update_fields=["status"])
    assert checkouts_prune(holder="engine", commits_in_use=run_commits_in_use) == [shas[0]]


def test_a_sync_prunes_when_given_the_commits_in_use(origin):
    configure(origin.url)
    shas = [origin.commit({"hello/main.py": f"print({n})\n"}) for n in range(1)]
    sync_now()
    for n in range(1, 3):
        shas.append(origin.commit({"hello/main.py": f"print({n})\n"}))
        result = repository_sync(holder="engine", commits_in_use=run_commits_in_use)
    assert result.pruned == [shas[0]]


def test_a_second_sync_waits_for_the_first(origin):
    origin.commit(HELLO)
    configure(origin.url)
    GitRepository.objects.update(lease_holder="other-engine", lease_expires_at="2999-01-01T00:00Z")

    with pytest.raises(Exception, match="another git sync is running"):
        repository_sync(holder="test")
    GitRepository.objects.update(lease_expires_at="2000-01-01T00:00Z")  # the holder died
    assert sync_now().ok


# --- HTTPS with a token ------------------------------------------------------------------------

TOKEN = "glpat-s3cr3t-t0ken-value"


@pytest.fixture
def http_origin(tmp_path: Path):
    project = tmp_path / "served"
    origin = Origin(project / "pipelines.git")
    server = SmartHttpServer(project, user="deploy", password=TOKEN).start()
    yield origin, server
    server.stop()


def _files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink() and needle.encode() in path.read_bytes():
                found.append(path)
    return found


def test_a_token_authenticates_over_https_and_is_never_stored_in_git(http_origin):
    origin, server = http_origin
    sha = origin.commit(HELLO)
    configure(
        server.url("pipelines.git"),
        auth_method=AuthMethod.TOKEN,
        https_username="deploy",
        token=TOKEN,
    )

    assert sync_now().commit == sha

    assert any(auth.startswith("Basic ") for auth in server.seen_auth)
    assert all(TOKEN not in path for path in server.seen_paths)
    config = (Path(settings.FASTFLOW_GIT_DIR) / "repo.git" / "config").read_text()
    assert TOKEN not in config and "url" not in config  # no remote at all
    assert _files_containing(Path(settings.FASTFLOW_GIT_DIR), TOKEN) == []
    assert TOKEN not in repo().token_encrypted


def test_the_token_is_in_no_command_line_while_git_fetches(tmp_path):
    project = tmp_path / "served"
    origin = Origin(project / "pipelines.git")
    origin.commit(HELLO)
    server = SmartHttpServer(project, user="deploy", password=TOKEN, delay=0.5).start()
    configure(
        server.url("pipelines.git"),
        auth_method=AuthMethod.TOKEN,
        https_username="deploy",
        token=TOKEN,
    )
    seen_git: list[list[str]] = []
    leaked: list[list[str]] = []
    done = threading.Event()

    def watch() -> None:  # no database here: the sync runs in the test's own thread
        while not done.is_set():
            for process in psutil.process_iter(["cmdline"]):
                cmdline = process.info["cmdline"] or []
                if any(TOKEN in part for part in cmdline):
                    leaked.append(cmdline)
                if "fetch" in cmdline:
                    seen_git.append(cmdline)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = repository_sync(holder="test")
    finally:
        done.set()
        watcher.join()
        server.stop()

    assert result.ok, result.error
    assert leaked == []
    assert any("fetch" in cmdline for cmdline in seen_git), seen_git  # it was watched


def test_a_wrong_token_fails_without_showing_it(http_origin, caplog):
    origin, server = http_origin
    origin.commit(HELLO)
    configure(
        server.url("pipelines.git"),
        auth_method=AuthMethod.TOKEN,
        https_username="deploy",
        token="wrong-" + TOKEN,
    )

    result = repository_sync(holder="test")

    assert not result.ok and "authentication failed" in result.error
    assert TOKEN not in result.error and TOKEN not in caplog.text
    assert repo().commit == ""


# --- SSH with a deploy key ---------------------------------------------------------------------


@pytest.fixture
def ssh_origin(tmp_path: Path):
    require_sshd()
    origin = Origin(tmp_path / "ssh-served" / "pipelines")
    server = SshServer(tmp_path / "sshd").start()
    yield origin, server
    server.stop()


def _configure_ssh(server: SshServer, origin: Origin, known_hosts: str) -> GitRepository:
    configure(
        server.url(origin.path),
        auth_method=AuthMethod.SSH_KEY,
        generate_deploy_key=True,
        ssh_known_hosts=known_hosts,
    )
    state = repo()
    server.authorize(state.ssh_public_key)
    return state


def test_it_fetches_over_ssh_with_a_generated_deploy_key_and_the_pinned_host_key(ssh_origin):
    origin, server = ssh_origin
    sha = origin.commit(HELLO)
    state = _configure_ssh(server, origin, server.known_hosts_line())

    assert state.ssh_public_key.startswith("ssh-ed25519 ")
    assert "PRIVATE KEY" not in state.ssh_private_key_encrypted
    assert sync_now().commit == sha
    assert (pipelines_root() / "hello" / "main.py").is_file()
    assert not list(Path(settings.FASTFLOW_GIT_DIR).rglob("deploy_key"))


def test_a_host_key_other_than_the_pinned_one_is_refused(ssh_origin, tmp_path):
    origin, server = ssh_origin
    origin.commit(HELLO)
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    kind, key = Path(f"{impostor}.pub").read_text().split()[:2]
    _configure_ssh(server, origin, f"[127.0.0.1]:{server.port} {kind} {key}")

    result = repository_sync(holder="test")

    assert not result.ok
    assert "host key verification failed" in result.error.lower()
    real = (server.root / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert real in repo().ssh_offered_host_keys  # shown for comparison, not trusted
    assert repo().commit == "" and not pipelines_root().is_symlink()


def test_without_a_pinned_host_key_it_shows_the_offered_one_and_pins_it_on_request(ssh_origin):
    origin, server = ssh_origin
    sha = origin.commit(HELLO)
    _configure_ssh(server, origin, "")

    first = repository_sync(holder="test")

    assert not first.ok and "no SSH host key is pinned" in first.error
    assert "ssh-ed25519 SHA256:" in first.error
    assert repo().commit == ""
    pinned = repository_pin_offered_host_keys()
    assert server.known_hosts_line().split()[2] in pinned.ssh_known_hosts
    assert pinned.sync_requested_at is not None
    assert sync_now().commit == sha


def test_a_deploy_key_the_server_does_not_know_is_refused(ssh_origin):
    origin, server = ssh_origin
    origin.commit(HELLO)
    _configure_ssh(server, origin, server.known_hosts_line())
    server.authorize("")  # the key was never added to the repository

    result = repository_sync(holder="test")

    assert not result.ok and "refused the deploy key" in result.error


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        (RepositoryConfig(url="https://user:tok@example.org/r.git"), "url", "Do not put a token"),
        (RepositoryConfig(url="git@example.org:team/r.git"), "url", "needs a deploy key"),
        (
            RepositoryConfig(url="file:///srv/r.git", auth_method=AuthMethod.TOKEN, token="t"),
            "url",
            "needs an https://",
        ),
        (RepositoryConfig(url="/srv/r.git"), "url", "Use https://"),
        (RepositoryConfig(url="--upload-pack=evil"), "url", "Not a repository URL"),
        (RepositoryConfig(url="file:///r", branch="bad..name"), "branch", "valid branch"),
        (RepositoryConfig(url="file:///r", subdir="../up"), "subdir", "no '..'"),
        (RepositoryConfig(url="file:///r", auto_sync_interval=3), "auto_sync_interval", "at least"),
        (
            RepositoryConfig(url="https://example.org/r.git", auth_method=AuthMethod.TOKEN),
            "token",
            "Enter a token",
        ),
        (
            RepositoryConfig(
                url="ssh://git@example.org/r.git",
                auth_method=AuthMethod.SSH_KEY,
                ssh_private_key="not a key",
            ),
            "ssh_private_key",
            "OpenSSH private key",
        ),
        (
            RepositoryConfig(
                url="ssh://git@example.org/r.git",
                auth_method=AuthMethod.SSH_KEY,
                generate_deploy_key=True,
                ssh_known_hosts="example.org ssh-ed25519 !!!",
            ),
            "ssh_known_hosts",
            "not valid base64",
        ),
    ],
)
def test_a_bad_configuration_is_refused_with_the_field_and_the_reason(config, field, words):
    errors = repository_config_errors(config=config)

    assert words in errors.get(field, ""), errors
    with pytest.raises(GitConfigInvalid) as refused:
        configure(**{"url": config.url, **{k: v for k, v in vars(config).items() if k != "url"}})
    assert field in refused.value.fields
    assert not GitRepository.objects.exists()


def test_credentials_the_method_does_not_use_are_deleted():
    configure("https://example.org/r.git", auth_method=AuthMethod.TOKEN, token="secret-token")
    assert repo().has_token

    configure("https://example.org/public.git")

    assert not repo().has_token and repo().token_encrypted == ""


def test_bare_host_keys_are_pinned_for_the_repository_host():
    configure(
        "ssh://git@forge.example:2222/team/r.git",
        auth_method=AuthMethod.SSH_KEY,
        generate_deploy_key=True,
        ssh_known_hosts="# from the forge's docs\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq\n",
    )
    assert (
        repo().ssh_known_hosts == "[forge.example]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq\n"
    )


def test_rotatesecrets_re_encrypts_the_git_credentials_too(settings, capsys):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from secrets_app import crypto

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FASTFLOW_ENCRYPTION_KEYS = [old]
    configure(
        "https://example.org/r.git",
        auth_method=AuthMethod.TOKEN,
        token="tok-value",
        webhook_secret="hook-value",
    )
    settings.FASTFLOW_ENCRYPTION_KEYS = [new, old]

    call_command("rotatesecrets")

    assert "2 git sync credential(s)" in capsys.readouterr().out
    settings.FASTFLOW_ENCRYPTION_KEYS = [new]  # the old key can be retired
    assert crypto.decrypt(repo().token_encrypted) == "tok-value"
    assert crypto.decrypt(repo().webhook_secret_encrypted) == "hook-value"


def test_a_switch_and_a_failure_are_audited_but_a_sync_with_nothing_new_is_not(origin):
    from audit_app.context import AuditContext
    from audit_app.models import AuditEntry

    first = origin.commit(HELLO)
    configure(origin.url)
    engine = AuditContext.engine(name="engine-1")
    repository_sync(holder="engine-1", audit=engine)
    repository_sync(holder="engine-1", audit=engine)  # nothing new
    configure(origin.url, branch="gone")
    repository_sync(holder="engine-1", audit=engine)

    entries = AuditEntry.objects.filter(action__startswith="git.sync").order_by("id")
    assert [(e.action, e.actor_name) for e in entries] == [
        ("git.sync", "engine-1"),
        ("git.sync_failed", "engine-1"),
    ]
    assert entries[0].details == {"commit": first, "previous_commit": ""}
    assert "branch does not exist" in entries[1].details["error"]
