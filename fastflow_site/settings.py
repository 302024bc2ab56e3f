"""Fast-Flow settings.

Everything comes from the environment (see `.env.example`). The defaults run on SQLite in
`./data` with no configuration at all; a malformed value raises `ImproperlyConfigured` naming
the variable instead of silently falling back.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from fastflow_site.datadir import private_dir

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(os.environ.get("FASTFLOW_ENV_FILE", BASE_DIR / ".env"), overwrite=False)


def _read(name: str, cast: Any, default: Any) -> Any:
    """Read one variable; any parse error names the variable."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"{name}: invalid value {os.environ.get(name)!r} ({exc})"
        ) from exc


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _read(name, env.int, default)
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}: must be >= {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    # Not env.float: it drops every non-digit, so "2s" or "1.5.2" would pass as 2.0 and 15.2.
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name}: expected a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}: must be >= {minimum}, got {value}")
    return value


def env_str(name: str, default: str) -> str:
    return _read(name, env.str, default)


def env_path_map(name: str) -> tuple[tuple[str, str], ...]:
    """ "/data=/srv/data,/pipelines=/srv/pipes" → ((engine prefix, host prefix), …), the
    longest engine prefix first."""
    pairs = []
    for item in (part.strip() for part in env_str(name, "").split(",")):
        if not item:
            continue
        left, sep, right = (side.strip() for side in item.partition("="))
        if not sep or not left.startswith("/") or not right.startswith("/"):
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not '<absolute engine path>=<absolute host path>'"
            )
        pairs.append((os.path.normpath(left), os.path.normpath(right)))
    return tuple(sorted(pairs, key=lambda pair: len(pair[0]), reverse=True))


# Docker's network names (no ':', so no `container:<id>` network namespace).
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def env_network(name: str, default: str, *, empty_ok: bool = False) -> str:
    # Empty means the default (compose passes unset variables through as "").
    value = env_str(name, default).strip() or default
    if (value or not empty_ok) and not _NETWORK_NAME.fullmatch(value):
        raise ImproperlyConfigured(f"{name}: {value!r} is not a Docker network name")
    return value


def env_networks(name: str, default: str) -> tuple[str, ...]:
    raw = env_str(name, default).strip() or default  # empty: the default, as above
    values = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    bad = [v for v in values if not _NETWORK_NAME.fullmatch(v)]
    if bad:
        raise ImproperlyConfigured(
            f"{name}: {', '.join(map(repr, bad))} is not a Docker network name "
            "(comma-separated names, e.g. none,bridge)"
        )
    return values


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def env_size(name: str, default: str) -> int:
    """A size in bytes, written like pipeline.json's memory limits: `512m`, `2g`, `1.5GiB`."""
    raw = os.environ.get(name, "").strip() or default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", raw, re.IGNORECASE)
    if not match:
        raise ImproperlyConfigured(f"{name}: expected a size such as 512m or 2g, got {raw!r}")
    value = int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    if value <= 0:
        raise ImproperlyConfigured(f"{name}: must be more than 0, got {raw!r}")
    return value


def default_within_max(default_name: str, default: float, max_name: str, maximum: float) -> None:
    if default > maximum:
        raise ImproperlyConfigured(
            f"{default_name}: the default ({default:g}) is above {max_name} ({maximum:g})"
        )


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value


_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_K8S_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?" + _K8S_LABEL_VALUE.pattern)


def env_k8s_name(name: str, default: str, *, optional: bool = False) -> str:
    """A Kubernetes object name (namespace, service account, secret): DNS-1123."""
    value = env_str(name, default).strip()
    if optional and not value:
        return ""
    if not _K8S_NAME.fullmatch(value):
        raise ImproperlyConfigured(
            f"{name}: {value!r} is not a Kubernetes name (lower-case letters, digits, '-', '.')"
        )
    return value


def env_k8s_names(name: str) -> tuple[str, ...]:
    """Comma-separated Kubernetes object names."""
    items = [item.strip() for item in env_str(name, "").split(",") if item.strip()]
    for item in items:
        if not _K8S_NAME.fullmatch(item):
            raise ImproperlyConfigured(f"{name}: {item!r} is not a Kubernetes name")
    return tuple(items)


def env_k8s_labels(name: str) -> dict[str, str]:
    """ "disktype=ssd,pool=runs" → a node selector."""
    labels = {}
    for item in (part.strip() for part in env_str(name, "").split(",")):
        if not item:
            continue
        key, sep, value = (side.strip() for side in item.partition("="))
        if (
            not sep
            or not key
            or not _K8S_LABEL_KEY.fullmatch(key)
            or not _K8S_LABEL_VALUE.fullmatch(value)
        ):
            raise ImproperlyConfigured(f"{name}: {item!r} is not '<label key>=<label value>'")
        labels[key] = value
    return labels


def env_json_list(name: str) -> list[dict[str, Any]]:
    """A JSON list of objects (e.g. pod tolerations, as in a pod spec)."""
    raw = env_str(name, "").strip()
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ImproperlyConfigured(f"{name}: expected a JSON list of objects, got {raw!r}")
    return value


def env_k8s_volume(name: str) -> tuple[str, str] | None:
    """ "pvc:<claim name>" or "host:<absolute path>" → ("pvc", claim) / ("host", path)."""
    raw = env_str(name, "").strip()
    if not raw:
        return None
    kind, sep, where = raw.partition(":")
    if sep and kind == "pvc" and _K8S_NAME.fullmatch(where):
        return kind, where
    if sep and kind == "host" and where.startswith("/"):
        return kind, os.path.normpath(where)
    raise ImproperlyConfigured(
        f"{name}: expected pvc:<claim name> or host:<absolute path>, got {raw!r}"
    )


def _persisted_value(path: Path, make: Any) -> str:
    """Development convenience: a value generated once and kept in the data dir."""
    if path.exists():
        return path.read_text().strip()
    private_dir(path.parent)
    # The web process and the engine may start together on a fresh data dir: write a complete
    # file under a private name, then link it into place (atomic, fails if taken), so every
    # process ends up reading the one value that won, never a half-written file.
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(make())
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", True)

DATA_DIR = Path(env_str("FASTFLOW_DATA_DIR", str(BASE_DIR / "data"))).resolve()
# Absolute but not resolved: with git sync the directory is a symlink that moves to each new
# checkout, and a path resolved once at start-up would stay on the first one.
PIPELINES_DIR = Path(
    os.path.abspath(env_str("FASTFLOW_PIPELINES_DIR", str(BASE_DIR / "pipelines")))
)
LOGS_DIR = DATA_DIR / "logs"
METRICS_DIR = DATA_DIR / "metrics"

SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY: required when DEBUG is off")
    SECRET_KEY = _persisted_value(DATA_DIR / "secret_key", lambda: secrets.token_urlsafe(50))

ALLOWED_HOSTS = _read("ALLOWED_HOSTS", env.list, ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", env.list, [])
FASTFLOW_BASE_URL = env_str("FASTFLOW_BASE_URL", "http://localhost:8000").rstrip("/")

# --- Encryption of secrets (MultiFernet: the first key encrypts, all keys decrypt) ---------------
_raw_keys = env_str("FASTFLOW_ENCRYPTION_KEY", "")
if not _raw_keys:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FASTFLOW_ENCRYPTION_KEY: required when DEBUG is off "
            "(generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        )
    _key_path = DATA_DIR / "encryption.key"
    if not _key_path.exists():
        print(
            f"WARNING: FASTFLOW_ENCRYPTION_KEY is not set: generated a development key in "
            f"{_key_path}. Set FASTFLOW_ENCRYPTION_KEY in production and keep it safe.",
            file=sys.stderr,
        )
    from cryptography.fernet import Fernet

    _raw_keys = _persisted_value(_key_path, lambda: Fernet.generate_key().decode())
FASTFLOW_ENCRYPTION_KEYS = [k.strip() for k in _raw_keys.split(",") if k.strip()]
try:
    from cryptography.fernet import Fernet as _Fernet

    for _k in FASTFLOW_ENCRYPTION_KEYS:
        _Fernet(_k)
except (ValueError, TypeError) as _exc:
    raise ImproperlyConfigured(
        "FASTFLOW_ENCRYPTION_KEY: every comma-separated key must be a valid Fernet key "
        "(32 url-safe base64-encoded bytes)"
    ) from _exc

# --- Applications -------------------------------------------------------------------------------
INSTALLED_APPS = [
    # django.contrib.admin, with the console's dashboard as the admin index.
    "fastflow_site.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_apscheduler",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.google",
    "fastflow_site",
    "accounts_app",
    "pipelines_app",
    "runs_app",
    "secrets_app",
    "notifications_app",
    "audit_app",
    "gitsync_app",
]

MIDDLEWARE = [
    # Every log record of a request carries its id (FASTFLOW_LOG_FORMAT=json prints it).
    "fastflow_site.logformat.RequestIdMiddleware",
    # Then: /healthz and /readyz answer whatever the Host header (probes come by IP).
    "fastflow_site.health.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "fastflow_site.urls"
WSGI_APPLICATION = "fastflow_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
SQLITE_BUSY_TIMEOUT_MS = env_int("FASTFLOW_SQLITE_BUSY_TIMEOUT_MS", 20000, minimum=0)
try:
    DATABASES = {
        "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'fastflow.db'}")
    }
except (ValueError, KeyError, ImproperlyConfigured) as _exc:
    raise ImproperlyConfigured(f"DATABASE_URL: invalid value ({_exc})") from _exc
_SUPPORTED_DATABASES = {
    "django.db.backends.sqlite3": "sqlite:////absolute/path/fastflow.db",
    "django.db.backends.postgresql": "postgres://user:password@host:5432/dbname",
}
if DATABASES["default"].get("ENGINE") not in _SUPPORTED_DATABASES:
    raise ImproperlyConfigured(
        "DATABASE_URL: unsupported or malformed URL; expected "
        + " or ".join(_SUPPORTED_DATABASES.values())
    )
if DATABASES["default"].get("NAME") in {"", ":memory:"}:
    # An in-memory SQLite database cannot be shared by the web process and the engine.
    raise ImproperlyConfigured(
        "DATABASE_URL: the URL names no database, expected "
        + _SUPPORTED_DATABASES[DATABASES["default"]["ENGINE"]]
    )

# Persistent connections. PostgreSQL: one psycopg pool per process (Django's OPTIONS["pool"]),
# because the engine drives every run in a new thread and Django's CONN_MAX_AGE keeps a
# connection per thread: it would still connect once per run. Pooled connections outlive the
# threads; a connection is checked on checkout (`fastflow_site/dbpool.py`), so one broken by a
# database restart is replaced, never handed out. Without the pool, and on SQLite, threads keep
# their connection for FASTFLOW_DB_CONN_MAX_AGE seconds (health-checked at each request or loop
# round by close_old_connections()).
FASTFLOW_DB_POOL = env_bool("FASTFLOW_DB_POOL", True)
FASTFLOW_DB_POOL_MIN_SIZE = env_int("FASTFLOW_DB_POOL_MIN_SIZE", 2, minimum=0)
FASTFLOW_DB_POOL_MAX_SIZE = env_int("FASTFLOW_DB_POOL_MAX_SIZE", 20, minimum=1)
if FASTFLOW_DB_POOL_MAX_SIZE < FASTFLOW_DB_POOL_MIN_SIZE:
    raise ImproperlyConfigured(
        f"FASTFLOW_DB_POOL_MAX_SIZE: must be >= FASTFLOW_DB_POOL_MIN_SIZE "
        f"({FASTFLOW_DB_POOL_MIN_SIZE}), got {FASTFLOW_DB_POOL_MAX_SIZE}"
    )
# How long a thread waits for a free pooled connection (or for the database to come back)
# before the query fails with OperationalError.
FASTFLOW_DB_POOL_TIMEOUT = env_float("FASTFLOW_DB_POOL_TIMEOUT", 5.0, minimum=0.1)
FASTFLOW_DB_CONN_MAX_AGE = env_int("FASTFLOW_DB_CONN_MAX_AGE", 600, minimum=0)
DATABASES["default"]["CONN_MAX_AGE"] = FASTFLOW_DB_CONN_MAX_AGE
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers and one writer work at once; IMMEDIATE transactions take the write lock
    # up front so two processes wait on busy_timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            "PRAGMA synchronous=NORMAL;"
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS};"
        ),
    }
    DATABASES["default"].setdefault("TEST", {})
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("application_name", "fastflow")
    if FASTFLOW_DB_POOL:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # a pooled connection is "closed" back to it
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": FASTFLOW_DB_POOL_MIN_SIZE,
            "max_size": FASTFLOW_DB_POOL_MAX_SIZE,
            "timeout": FASTFLOW_DB_POOL_TIMEOUT,
            # After a database outage the pool's reconnect back-off grows to minutes; giving up
            # after 10 s instead lets the next query that needs a connection try again at once.
            "reconnect_timeout": 10.0,
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts_app.User"

# --- Time, language, static files ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("FASTFLOW_STATIC_ROOT", str(DATA_DIR / "staticfiles")))
# Autorefresh in development: no collectstatic needed, no "No directory" warning. (The test
# suite picks the plain storage itself, in tests/conftest.py.)
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Run output storage (docs/storage.md) -----------------------------------------------------
# "local": logs and metrics are files in the data dir, read by the web process from the same
# disk (one host, or a shared volume). "s3": the engine keeps them in its own data dir while the
# run is live, copies new lines into the database every FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS
# (what the web process shows meanwhile) and moves them to an S3-compatible bucket at the end.
FASTFLOW_RUN_STORAGE = env_choice("FASTFLOW_RUN_STORAGE", "local", ("local", "s3"))
FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS = env_float(
    "FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS", 1.0, minimum=0.05
)
# The name of the Django storage (settings.STORAGES) holding archived run output.
RUN_OUTPUT_STORAGE = "fastflow_runs"


def _s3_storage() -> dict[str, Any]:
    """The django-storages S3 backend from FASTFLOW_S3_*; only read with FASTFLOW_RUN_STORAGE=s3."""
    bucket = env_str("FASTFLOW_S3_BUCKET", "").strip()
    if not bucket:
        raise ImproperlyConfigured("FASTFLOW_S3_BUCKET: required with FASTFLOW_RUN_STORAGE=s3")
    endpoint = env_str("FASTFLOW_S3_ENDPOINT_URL", "").strip()
    if endpoint and not re.match(r"https?://[^/\s]+", endpoint):
        raise ImproperlyConfigured(
            f"FASTFLOW_S3_ENDPOINT_URL: expected http(s)://host[:port], got {endpoint!r}"
        )
    try:
        import storages.backends.s3  # noqa: F401 - fail here, naming the extra, not at run end
    except ImportError as exc:
        raise ImproperlyConfigured(
            "FASTFLOW_RUN_STORAGE: s3 needs django-storages[s3] (pip install 'fastflow[s3]')"
        ) from exc
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint or None,
            "region_name": env_str("FASTFLOW_S3_REGION", "").strip() or None,
            # Empty: boto3's own chain (AWS_* variables, an instance or pod role, ~/.aws).
            "access_key": env_str("FASTFLOW_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("FASTFLOW_S3_SECRET_ACCESS_KEY", "") or None,
            "location": env_str("FASTFLOW_S3_PREFIX", "").strip().strip("/"),
            "addressing_style": env_choice(
                "FASTFLOW_S3_ADDRESSING_STYLE", "auto", ("auto", "path", "virtual")
            ),
            # A run's objects are written once under their own names; private, never signed
            # URLs: the web process reads them and serves them behind its permissions.
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": False,
            "signature_version": "s3v4",
        },
    }


if FASTFLOW_RUN_STORAGE == "s3":
    STORAGES[RUN_OUTPUT_STORAGE] = _s3_storage()

# --- Cache -------------------------------------------------------------------------------------
# Fast-Flow's own rate limits, webhook replay protection and idempotency live in the database
# (fastflow_site.throttle), shared by every process. Django's cache only serves libraries
# (allauth's own throttles); the default is per process.
try:
    CACHES = {"default": env.cache_url("FASTFLOW_CACHE_URL", default="locmemcache://")}
except (ValueError, KeyError, ImproperlyConfigured) as _exc:
    raise ImproperlyConfigured(f"FASTFLOW_CACHE_URL: invalid value ({_exc})") from _exc

# --- Security -----------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("FASTFLOW_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("FASTFLOW_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

AUTHENTICATION_BACKENDS = [
    "accounts_app.backends.RoleBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/admin/"

# --- allauth (OAuth only: there are no passwords) -----------------------------------------------
SITE_ID = 1
FASTFLOW_GITHUB_CLIENT_ID = env_str("FASTFLOW_GITHUB_CLIENT_ID", "")
FASTFLOW_GITHUB_CLIENT_SECRET = env_str("FASTFLOW_GITHUB_CLIENT_SECRET", "")
FASTFLOW_GOOGLE_CLIENT_ID = env_str("FASTFLOW_GOOGLE_CLIENT_ID", "")
FASTFLOW_GOOGLE_CLIENT_SECRET = env_str("FASTFLOW_GOOGLE_CLIENT_SECRET", "")
FASTFLOW_INITIAL_ADMIN_EMAIL = env_str("FASTFLOW_INITIAL_ADMIN_EMAIL", "").strip()
# Invitation and login-link endpoints: at most COUNT requests per WINDOW seconds per client IP.
FASTFLOW_AUTH_RATE_LIMIT_COUNT = env_int("FASTFLOW_AUTH_RATE_LIMIT_COUNT", 20, minimum=1)
FASTFLOW_AUTH_RATE_LIMIT_WINDOW = env_int("FASTFLOW_AUTH_RATE_LIMIT_WINDOW", 300, minimum=1)

ACCOUNT_ADAPTER = "accounts_app.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts_app.adapters.SocialAccountAdapter"
SOCIALACCOUNT_ONLY = True  # no local passwords, signup, password reset or email pages
ACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # email matching is ours (verified emails only)
SOCIALACCOUNT_QUERY_EMAIL = True  # GitHub: fetch /user/emails with their verified flags
SOCIALACCOUNT_LOGIN_ON_GET = False  # keep the POST + CSRF confirmation step
SOCIALACCOUNT_STORE_TOKENS = False  # we never call the providers after login
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGOUT_REDIRECT_URL = LOGIN_URL

SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, Any]] = {}
if FASTFLOW_GITHUB_CLIENT_ID:
    SOCIALACCOUNT_PROVIDERS["github"] = {
        "APPS": [
            {
                "client_id": FASTFLOW_GITHUB_CLIENT_ID,
                "secret": FASTFLOW_GITHUB_CLIENT_SECRET,
            }
        ],
        "SCOPE": ["read:user", "user:email"],
    }
if FASTFLOW_GOOGLE_CLIENT_ID:
    SOCIALACCOUNT_PROVIDERS["google"] = {
        "APPS": [
            {
                "client_id": FASTFLOW_GOOGLE_CLIENT_ID,
                "secret": FASTFLOW_GOOGLE_CLIENT_SECRET,
            }
        ],
        "SCOPE": ["openid", "email", "profile"],
        "OAUTH_PKCE_ENABLED": True,
    }

# --- REST framework -----------------------------------------------------------------------------
# No DEFAULT_PAGINATION_CLASS / PAGE_SIZE: the list views paginate explicitly
# (fastflow_site/api/pagination.py), so those settings would do nothing.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts_app.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "fastflow_site.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "fastflow_site.api.schema.FastflowAutoSchema",
    "EXCEPTION_HANDLER": "fastflow_site.api.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fast-Flow API",
    "DESCRIPTION": "Automation API of the Fast-Flow pipeline orchestrator.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ (Swagger UI) loads its scripts from drf-spectacular-sidecar's static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # validatorUrl None: Swagger UI would otherwise send the schema to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "displayOperationId": True, "validatorUrl": None},
}

# --- APScheduler --------------------------------------------------------------------------------
APSCHEDULER_DATETIME_FORMAT = "Y-m-d H:i:s"
APSCHEDULER_RUN_NOW_TIMEOUT = 25

# --- The run engine -----------------------------------------------------------------------------
FASTFLOW_EXECUTOR = env_choice("FASTFLOW_EXECUTOR", "docker", ("docker", "local", "kubernetes"))
RUNNER_IMAGE_DEFAULT = "ghcr.io/astral-sh/uv:python{python_version}-bookworm-slim"
# Empty means the default (compose passes unset variables through as "").
FASTFLOW_RUNNER_IMAGE = env_str("FASTFLOW_RUNNER_IMAGE", "").strip() or RUNNER_IMAGE_DEFAULT
FASTFLOW_DEFAULT_PYTHON_VERSION = env_str("FASTFLOW_DEFAULT_PYTHON_VERSION", "3.11")
# Docker networks of runs: the default of every run, and the networks a pipeline.json may choose
# besides it (its `network` key; checked at discovery). `host` — the host's own network stack,
# its loopback services included — only when listed here. The cache warm-up needs the package
# index: it uses FASTFLOW_WARMUP_NETWORK (empty: the runs' default, or bridge when that is none).
RUNNER_NETWORK_DEFAULT = "bridge"
FASTFLOW_RUNNER_NETWORK = env_network("FASTFLOW_RUNNER_NETWORK", RUNNER_NETWORK_DEFAULT)
FASTFLOW_RUNNER_NETWORKS_ALLOWED = env_networks("FASTFLOW_RUNNER_NETWORKS_ALLOWED", "none,bridge")
FASTFLOW_WARMUP_NETWORK = env_network("FASTFLOW_WARMUP_NETWORK", "", empty_ok=True)
# Pull a runner image that is not on the Docker host yet (off: a missing image fails the run).
FASTFLOW_RUNNER_PULL = env_bool("FASTFLOW_RUNNER_PULL", True)
FASTFLOW_RUNNER_CA_BUNDLE = env_str("FASTFLOW_RUNNER_CA_BUNDLE", "")
FASTFLOW_RUNNER_USER = env_str("FASTFLOW_RUNNER_USER", "65534:65534")
# Resource limits of a run: the default when pipeline.json sets none, and the most it may ask
# for (a pipeline.json asking for more is a discovery error naming the key and the maximum).
FASTFLOW_RUN_MEM_DEFAULT = env_size("FASTFLOW_RUN_MEM_DEFAULT", "2g")  # mem_hard_limit
FASTFLOW_RUN_MEM_MAX = env_size("FASTFLOW_RUN_MEM_MAX", "16g")
FASTFLOW_RUN_CPU_DEFAULT = env_float("FASTFLOW_RUN_CPU_DEFAULT", 1.0, minimum=0.01)  # cores
FASTFLOW_RUN_CPU_MAX = env_float("FASTFLOW_RUN_CPU_MAX", float(os.cpu_count() or 1), minimum=0.01)
FASTFLOW_RUNNER_PIDS_LIMIT = env_int("FASTFLOW_RUNNER_PIDS_LIMIT", 512, minimum=16)  # pids_limit
FASTFLOW_RUNNER_PIDS_LIMIT_MAX = env_int("FASTFLOW_RUNNER_PIDS_LIMIT_MAX", 4096, minimum=16)
FASTFLOW_RUNNER_TMPFS_SIZE = env_size("FASTFLOW_RUNNER_TMPFS_SIZE", "256m")  # tmp_size
FASTFLOW_RUNNER_TMPFS_SIZE_MAX = env_size("FASTFLOW_RUNNER_TMPFS_SIZE_MAX", "4g")
for _name, _default, _maximum in (
    ("FASTFLOW_RUN_MEM", FASTFLOW_RUN_MEM_DEFAULT, FASTFLOW_RUN_MEM_MAX),
    ("FASTFLOW_RUN_CPU", FASTFLOW_RUN_CPU_DEFAULT, FASTFLOW_RUN_CPU_MAX),
):
    default_within_max(f"{_name}_DEFAULT", _default, f"{_name}_MAX", _maximum)
default_within_max(
    "FASTFLOW_RUNNER_PIDS_LIMIT",
    FASTFLOW_RUNNER_PIDS_LIMIT,
    "FASTFLOW_RUNNER_PIDS_LIMIT_MAX",
    FASTFLOW_RUNNER_PIDS_LIMIT_MAX,
)
default_within_max(
    "FASTFLOW_RUNNER_TMPFS_SIZE",
    FASTFLOW_RUNNER_TMPFS_SIZE,
    "FASTFLOW_RUNNER_TMPFS_SIZE_MAX",
    FASTFLOW_RUNNER_TMPFS_SIZE_MAX,
)
FASTFLOW_DOCKER_HOST = env_str("FASTFLOW_DOCKER_HOST", "")
# The Docker executor's warm pool of pre-started single-use containers (runs_app.engine.
# docker_pool): members in all (0: no pool), per pipeline (and limits/network), and how long a
# member or a pipeline without runs is kept.
FASTFLOW_DOCKER_POOL_SIZE = env_int("FASTFLOW_DOCKER_POOL_SIZE", 4, minimum=0)
FASTFLOW_DOCKER_POOL_PER_PIPELINE = env_int("FASTFLOW_DOCKER_POOL_PER_PIPELINE", 2, minimum=1)
FASTFLOW_DOCKER_POOL_IDLE_SECONDS = env_float("FASTFLOW_DOCKER_POOL_IDLE_SECONDS", 300.0, minimum=5)
# Engine path prefix = Docker host path prefix, for bind mounts of an engine that runs in a
# container (runs_app.engine.hostpaths); empty: read from the engine's own container mounts.
FASTFLOW_DOCKER_PATH_MAP = env_path_map("FASTFLOW_DOCKER_PATH_MAP")
FASTFLOW_UV_CACHE_DIR = Path(env_str("FASTFLOW_UV_CACHE_DIR", str(DATA_DIR / "uv-cache")))
# --- The Kubernetes executor (FASTFLOW_EXECUTOR=kubernetes; docs/executors.md, docs/scaling.md)
# Where the API server is: a kubeconfig file (and optionally one of its contexts); empty = the
# in-cluster service account when the engine runs in a pod, else ~/.kube/config or KUBECONFIG.
FASTFLOW_K8S_KUBECONFIG = env_str("FASTFLOW_K8S_KUBECONFIG", "")
FASTFLOW_K8S_CONTEXT = env_str("FASTFLOW_K8S_CONTEXT", "")
FASTFLOW_K8S_NAMESPACE = env_k8s_name("FASTFLOW_K8S_NAMESPACE", "default")
# The service account run pods use (empty: the namespace's default); its token is never mounted.
FASTFLOW_K8S_SERVICE_ACCOUNT = env_k8s_name("FASTFLOW_K8S_SERVICE_ACCOUNT", "", optional=True)
FASTFLOW_K8S_NODE_SELECTOR = env_k8s_labels("FASTFLOW_K8S_NODE_SELECTOR")
FASTFLOW_K8S_TOLERATIONS = env_json_list("FASTFLOW_K8S_TOLERATIONS")
FASTFLOW_K8S_IMAGE_PULL_SECRETS = env_k8s_names("FASTFLOW_K8S_IMAGE_PULL_SECRETS")
# The volumes runs read the pipeline folder and the prepared environments from, read-only:
# `pvc:<claim>` or `host:<absolute path>`; the engine sees the same volume at
# FASTFLOW_PIPELINES_DIR and FASTFLOW_UV_CACHE_DIR.
FASTFLOW_K8S_PIPELINES_VOLUME = env_k8s_volume("FASTFLOW_K8S_PIPELINES_VOLUME")
FASTFLOW_K8S_CACHE_VOLUME = env_k8s_volume("FASTFLOW_K8S_CACHE_VOLUME")
# The volume the engine sees at FASTFLOW_DATA_DIR, shared with run pods: each run mounts its
# output directory (run-outputs/<run id>, a subPath) read-write at /fastflow. Runs fail
# without it (their route file and executed notebook would be lost).
FASTFLOW_K8S_OUTPUT_VOLUME = env_k8s_volume("FASTFLOW_K8S_OUTPUT_VOLUME")
# Where the engine sees the root of the pipelines volume, when that is not
# FASTFLOW_PIPELINES_DIR itself: with git sync, the folder holding both the pipelines symlink
# and FASTFLOW_GIT_DIR (runs mount their own commit's checkout, a subPath of it).
FASTFLOW_K8S_PIPELINES_VOLUME_PATH = env_str("FASTFLOW_K8S_PIPELINES_VOLUME_PATH", "").strip()
# A run's pod still Pending (unschedulable, image pull failing) after this long fails the run.
FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS = env_float(
    "FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS", 300.0, minimum=1
)
# ttlSecondsAfterFinished of run Jobs: the cluster removes a Job the engine could not.
FASTFLOW_K8S_JOB_TTL_SECONDS = env_int("FASTFLOW_K8S_JOB_TTL_SECONDS", 3600, minimum=0)
# How often the engine reads a run pod's status (the log stream ending wakes it at once).
FASTFLOW_K8S_POLL_SECONDS = env_float("FASTFLOW_K8S_POLL_SECONDS", 1.0, minimum=0.05)
# Timeout of one API request (connect and read; log and watch streams excepted).
FASTFLOW_K8S_REQUEST_TIMEOUT_SECONDS = env_float(
    "FASTFLOW_K8S_REQUEST_TIMEOUT_SECONDS", 10.0, minimum=0.1
)

FASTFLOW_LOG_MAX_BYTES = env_int("FASTFLOW_LOG_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
# /readyz reports "not ready" while the disk holding the logs has less free space than this.
FASTFLOW_LOG_DISK_MIN_FREE_BYTES = env_int(
    "FASTFLOW_LOG_DISK_MIN_FREE_BYTES", 256 * 1024 * 1024, minimum=0
)
FASTFLOW_MAX_CONCURRENT_RUNS = env_int("FASTFLOW_MAX_CONCURRENT_RUNS", 10, minimum=1)
# The engine is woken the moment a run is queued (PostgreSQL NOTIFY, or a FIFO in the data dir on
# SQLite); this poll is the fallback for a lost wake-up and for retries whose delay ran out.
FASTFLOW_DISPATCH_POLL_SECONDS = env_float("FASTFLOW_DISPATCH_POLL_SECONDS", 1.0, minimum=0.01)
FASTFLOW_CANCEL_GRACE_SECONDS = env_float("FASTFLOW_CANCEL_GRACE_SECONDS", 10.0, minimum=0)
FASTFLOW_METRICS_INTERVAL_SECONDS = env_float("FASTFLOW_METRICS_INTERVAL_SECONDS", 2.0, minimum=0.1)
FASTFLOW_SYNC_INTERVAL_SECONDS = env_float("FASTFLOW_SYNC_INTERVAL_SECONDS", 30.0, minimum=1)
FASTFLOW_HEARTBEAT_STALE_SECONDS = env_float("FASTFLOW_HEARTBEAT_STALE_SECONDS", 30.0, minimum=2)
FASTFLOW_SCHEDULE_GRACE_SECONDS = env_int("FASTFLOW_SCHEDULE_GRACE_SECONDS", 300, minimum=1)
FASTFLOW_DOWNSTREAM_MAX_DEPTH = env_int("FASTFLOW_DOWNSTREAM_MAX_DEPTH", 10, minimum=1)
# A claimed run whose engine died before its container/process started goes back to the queue
# at most this many times (then it fails with the reason).
FASTFLOW_REQUEUE_MAX = env_int("FASTFLOW_REQUEUE_MAX", 3, minimum=0)
# Daemon pipelines (restart_on_crash): a run that crashed sooner than this after its start is a
# quick crash; after this many quick crashes in a row the cooldown doubles per further crash,
# up to the maximum back-off (runs_app/daemon.py).
FASTFLOW_DAEMON_STABLE_SECONDS = env_float("FASTFLOW_DAEMON_STABLE_SECONDS", 300.0, minimum=0)
FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS = env_int("FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS", 3, minimum=0)
FASTFLOW_DAEMON_BACKOFF_MAX_SECONDS = env_int(
    "FASTFLOW_DAEMON_BACKOFF_MAX_SECONDS", 3600, minimum=1
)
# Largest file kept from a run's output directory as its artifact (the executed notebook).
FASTFLOW_ARTIFACT_MAX_BYTES = env_int("FASTFLOW_ARTIFACT_MAX_BYTES", 64 * 1024 * 1024, minimum=0)

# --- Notifications (Apprise), retention, audit ------------------------------------------------
# Checked entry by entry when the notifications app starts (ImproperlyConfigured names it).
FASTFLOW_NOTIFY_ALLOWED_HOSTS = _read("FASTFLOW_NOTIFY_ALLOWED_HOSTS", env.list, [])
FASTFLOW_NOTIFY_TIMEOUT_SECONDS = env_float("FASTFLOW_NOTIFY_TIMEOUT_SECONDS", 10.0, minimum=0.1)
FASTFLOW_NOTIFY_MAX_ATTEMPTS = env_int("FASTFLOW_NOTIFY_MAX_ATTEMPTS", 5, minimum=1)
FASTFLOW_NOTIFY_RETRY_SECONDS = env_float("FASTFLOW_NOTIFY_RETRY_SECONDS", 30.0, minimum=0)
FASTFLOW_NOTIFY_LOG_LINES = env_int("FASTFLOW_NOTIFY_LOG_LINES", 20, minimum=0)
FASTFLOW_NOTIFY_SCHEDULE_LATE_SECONDS = env_float(
    "FASTFLOW_NOTIFY_SCHEDULE_LATE_SECONDS", 60.0, minimum=0
)
FASTFLOW_NOTIFY_LONG_RUNNING_FACTOR = env_float(
    "FASTFLOW_NOTIFY_LONG_RUNNING_FACTOR", 0.0, minimum=0
)
FASTFLOW_NOTIFY_LONG_RUNNING_MIN_SECONDS = env_float(
    "FASTFLOW_NOTIFY_LONG_RUNNING_MIN_SECONDS", 60.0, minimum=0
)
FASTFLOW_NOTIFY_POLL_SECONDS = env_float("FASTFLOW_NOTIFY_POLL_SECONDS", 1.0, minimum=0.05)
FASTFLOW_NOTIFY_HISTORY_DAYS = env_int("FASTFLOW_NOTIFY_HISTORY_DAYS", 90, minimum=1)

# Retention of finished runs (with their log and metrics files); 0 = no limit. A pipeline's
# `retention` in pipeline.json overrides each value.
FASTFLOW_RETENTION_KEEP_RUNS = env_int("FASTFLOW_RETENTION_KEEP_RUNS", 0, minimum=0)
FASTFLOW_RETENTION_DAYS = env_int("FASTFLOW_RETENTION_DAYS", 90, minimum=0)
FASTFLOW_RETENTION_FAILED_DAYS = env_int("FASTFLOW_RETENTION_FAILED_DAYS", 180, minimum=0)
FASTFLOW_RETENTION_INTERVAL_SECONDS = env_float(
    "FASTFLOW_RETENTION_INTERVAL_SECONDS", 3600.0, minimum=1
)
FASTFLOW_RETENTION_BATCH_SIZE = env_int("FASTFLOW_RETENTION_BATCH_SIZE", 200, minimum=1)
FASTFLOW_RETENTION_BATCH_PAUSE_SECONDS = env_float(
    "FASTFLOW_RETENTION_BATCH_PAUSE_SECONDS", 0.15, minimum=0
)

# The audit log keeps entries this many days (0 = forever).
FASTFLOW_AUDIT_RETENTION_DAYS = env_int("FASTFLOW_AUDIT_RETENTION_DAYS", 365, minimum=0)

# --- Git sync (docs/git-sync.md; the repository itself is configured in the admin) --------------
# The bare repository and one checkout per commit; FASTFLOW_PIPELINES_DIR becomes a symlink to the
# current checkout. On storage every engine and the web process share, like the data dir.
FASTFLOW_GIT_DIR = Path(os.path.abspath(env_str("FASTFLOW_GIT_DIR", str(DATA_DIR / "git"))))
# Each git/ssh command (fetch, ls-remote, ssh-keyscan) is stopped after this many seconds.
FASTFLOW_GIT_TIMEOUT_SECONDS = env_float("FASTFLOW_GIT_TIMEOUT_SECONDS", 300.0, minimum=1)

# --- Interfaces ---------------------------------------------------------------------------------
FASTFLOW_WEBHOOK_MAX_BYTES = env_int("FASTFLOW_WEBHOOK_MAX_BYTES", 256 * 1024, minimum=1024)
FASTFLOW_WEBHOOK_RATE_PER_MINUTE = env_int("FASTFLOW_WEBHOOK_RATE_PER_MINUTE", 60, minimum=1)
FASTFLOW_PARAMETERS_MAX_COUNT = env_int("FASTFLOW_PARAMETERS_MAX_COUNT", 50, minimum=1)
FASTFLOW_PARAMETER_VALUE_MAX_BYTES = env_int(
    "FASTFLOW_PARAMETER_VALUE_MAX_BYTES", 16 * 1024, minimum=1
)
FASTFLOW_TOKEN_DEFAULT_DAYS = env_int("FASTFLOW_TOKEN_DEFAULT_DAYS", 30, minimum=1)
# /metrics: a bearer token for Prometheus (besides any user's API token or login session).
FASTFLOW_METRICS_TOKEN = env_str("FASTFLOW_METRICS_TOKEN", "").strip()
if FASTFLOW_METRICS_TOKEN and len(FASTFLOW_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured(
        "FASTFLOW_METRICS_TOKEN: use at least 16 characters (e.g. python -c "
        "'import secrets; print(secrets.token_urlsafe(32))')"
    )

# --- Logging ------------------------------------------------------------------------------------
# text: human-readable lines; json: one JSON object per line (request id, engine id, run id,
# pipeline where they apply; fastflow_site.logformat), for Loki / ELK.
FASTFLOW_LOG_FORMAT = env_choice("FASTFLOW_LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "fastflow_site.logformat.JsonFormatter"},
    },
    # Login-link and invitation tokens never reach a log line (accounts_app.logfilters).
    "filters": {"redact_link_tokens": {"()": "accounts_app.logfilters.RedactLinkTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if FASTFLOW_LOG_FORMAT == "json" else "plain",
            "filters": ["redact_link_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("FASTFLOW_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "apscheduler": {"level": "WARNING"},
        # Apprise logs target URLs (credentials) at debug level: its records only reach the
        # sender's capture (notifications_app.sender), which scrubs them into the attempt.
        "apprise": {"handlers": [], "propagate": False},
        # A logger-level filter runs before every handler, Django's own included. The
        # development server's `django.server` logger gets it in AccountsConfig.ready().
        "django.request": {"filters": ["redact_link_tokens"]},
    },
}
if FASTFLOW_LOG_FORMAT == "json":
    # Django's defaults give `django` (in DEBUG) and runserver's `django.server` plain handlers
    # of their own: every line goes through the JSON console handler instead.
    LOGGING["loggers"]["django"] = {"handlers": [], "level": "INFO"}
    LOGGING["loggers"]["django.server"] = {"handlers": ["console"], "propagate": False}
