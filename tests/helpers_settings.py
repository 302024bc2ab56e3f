"""Run Django in a fresh subprocess with a controlled environment, to test settings loading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Variables the settings read; a test run must not inherit them (CI sets DATABASE_URL, say).
SETTINGS_VARS = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CSRF_TRUSTED_ORIGINS")


def clean_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SETTINGS_VARS and not k.startswith(("FASTFLOW_", "DJANGO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="fastflow_site.settings",
        FASTFLOW_DATA_DIR=str(tmp_path / "data"),
        FASTFLOW_PIPELINES_DIR=str(tmp_path / "pipelines"),
        # Never pick up a developer's .env from the checkout.
        FASTFLOW_ENV_FILE=str(tmp_path / "absent.env"),
        PYTHONPATH=str(PROJECT_DIR),
    )
    env.update(overrides)
    return env


def run_django(
    tmp_path: Path, code: str = "", *, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """`django.setup()` then `code`, in a new interpreter; returns the finished process."""
    script = "import django\ndjango.setup()\nfrom django.conf import settings\n" + code
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manage(
    tmp_path: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def config_error(result: subprocess.CompletedProcess[str]) -> str:
    """The ImproperlyConfigured message a failed start ended with ('' if it did not fail so)."""
    prefix = "django.core.exceptions.ImproperlyConfigured: "
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    return lines[-1][len(prefix) :] if lines else ""


def fernet_key() -> str:
    return Fernet.generate_key().decode()


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "test-secret-key-not-for-production-use-0123456789",
        "FASTFLOW_ENCRYPTION_KEY": fernet_key(),
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
    }
    env.update(overrides)
    return env
