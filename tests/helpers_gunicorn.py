"""A real gunicorn with the image's configuration (deploy/gunicorn.conf.py), on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.helpers_settings import PROJECT_DIR, clean_env, fernet_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn(
    tmp_path: Path, port: int, *, workers: int = 1, **env: str
) -> tuple[subprocess.Popen, Path]:
    """The image's web command (gunicorn with deploy/gunicorn.conf.py), on 127.0.0.1."""
    environment = clean_env(
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'web.sqlite3'}",
        SECRET_KEY="log-format-test-secret-key-0123456789",
        FASTFLOW_ENCRYPTION_KEY=fernet_key(),
        PYTHONUNBUFFERED="1",
        **env,
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=PROJECT_DIR,
        env=environment,
        check=True,
    )
    out = tmp_path / "web.out"
    with out.open("wb") as sink:
        web = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"),
                *("-b", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", "2"),
                "fastflow_site.wsgi",
            ],
            cwd=PROJECT_DIR,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return web, out


def get(port: int, path: str, **headers: str) -> tuple[requests.Response] | None:
    # Not answering yet (None) covers a read timeout too: gunicorn binds its socket before its
    # workers have imported Django, which takes seconds on a loaded machine.
    try:
        return (requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=5),)
    except (requests.ConnectionError, requests.Timeout):
        return None
