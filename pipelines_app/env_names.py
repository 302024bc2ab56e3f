"""Environment variable names a run may not set, whatever sets them: run parameters (admin,
API, webhook, retries) and pipeline.json (`default_env`, `encrypted_env`, `secrets`).

They are read before or around the pipeline's own code — by the dynamic loader, the Python
interpreter, uv (which installs the requirements into the cache every run shares), TLS, git
and the HTTP stack — or are the engine's own. A webhook caller setting `PYTHONSTARTUP`,
`LD_PRELOAD` or `UV_INDEX_URL` would run code of their choosing or change what gets installed;
a run setting `HOME` or `FASTFLOW_RUN_ID` would be silently overridden by the executor, and
its recorded `env_vars` would then show a value the process never had.

Names are compared case-insensitively: several of these are read in lower case too
(`https_proxy`), and `Path` next to `PATH` only confuses.
"""

from __future__ import annotations

# Prefix → why. Every name starting with one of these is reserved.
RESERVED_PREFIXES: dict[str, str] = {
    "FASTFLOW_": "set by the engine",
    "PYTHON": "read by the Python interpreter at start-up",
    "LD_": "read by the dynamic loader",
    "DYLD_": "read by the dynamic loader",
    "UV_": "read by uv, which installs the run's requirements",
    "GIT_": "read by git, which uv runs for git requirements",
    "BASH_FUNC_": "imported as shell functions by bash",
}
# Exact name → why.
RESERVED_NAMES: dict[str, str] = {
    "PATH": "set by the executor",
    "HOME": "set by the executor",
    "TMPDIR": "set by the executor",
    "VIRTUAL_ENV": "read by uv to find an environment",
    "CONDA_PREFIX": "read by uv to find an interpreter",
    "GLIBC_TUNABLES": "read by the dynamic loader",
    "BASH_ENV": "a file bash runs before any script",
    "SSL_CERT_FILE": "decides which TLS certificates are trusted",
    "SSL_CERT_DIR": "decides which TLS certificates are trusted",
    "REQUESTS_CA_BUNDLE": "decides which TLS certificates are trusted",
    "CURL_CA_BUNDLE": "decides which TLS certificates are trusted",
    "OPENSSL_CONF": "makes OpenSSL load modules",
    "OPENSSL_MODULES": "makes OpenSSL load modules",
    "OPENSSL_ENGINES": "makes OpenSSL load modules",
    "HTTP_PROXY": "routes the run's and uv's HTTP traffic",
    "HTTPS_PROXY": "routes the run's and uv's HTTP traffic",
    "ALL_PROXY": "routes the run's and uv's HTTP traffic",
    "NO_PROXY": "routes the run's and uv's HTTP traffic",
}


def reserved_env_reason(name: str) -> str | None:
    """Why `name` may not be set by a run, or None when it may."""
    upper = name.upper()
    if upper in RESERVED_NAMES:
        return RESERVED_NAMES[upper]
    for prefix, reason in RESERVED_PREFIXES.items():
        if upper.startswith(prefix):
            return f"{prefix}* variables are {reason}"
    return None


def reserved_env_message(name: str, *, what: str = "variable") -> str | None:
    """The refusal for a reserved `name` (None when it is not reserved), naming it."""
    reason = reserved_env_reason(name)
    if reason is None:
        return None
    return f"{what} {name!r} is reserved ({reason}); use another name"
