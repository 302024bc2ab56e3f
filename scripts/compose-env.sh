#!/usr/bin/env bash
# compose-env.sh [FILE] — write the settings compose.yaml needs into FILE (default: .env next
# to compose.yaml): fresh random secrets, the Docker socket's group, the port. Never
# overwrites an existing file. Variables already set in the environment win (FASTFLOW_PORT,
# FASTFLOW_BASE_URL, FASTFLOW_PIPELINES_PATH, FASTFLOW_IMAGE, …).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.env}"
if [ -e "$out" ]; then
    echo "[compose-env] $out exists; not touching it (delete it to start over)" >&2
    exit 0
fi
random() { python3 -c "import secrets; print(secrets.token_urlsafe($1))"; }
fernet() { python3 -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"; }
port="${FASTFLOW_PORT:-8000}"
base_url="${FASTFLOW_BASE_URL:-http://localhost:$port}"
# Secure (HTTPS-only) cookies unless the public URL is plain http.
secure=true; case "$base_url" in http://*) secure=false ;; esac
sock="${DOCKER_SOCKET:-/var/run/docker.sock}"
gid="$(stat -c %g "$sock" 2>/dev/null || echo 999)"
umask 077
{
    echo "# Written by scripts/compose-env.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Keep it secret:"
    echo "# FASTFLOW_ENCRYPTION_KEY decrypts the stored secrets, losing it loses them."
    echo "POSTGRES_PASSWORD=$(random 24)"
    echo "SECRET_KEY=$(random 50)"
    echo "FASTFLOW_ENCRYPTION_KEY=$(fernet)"
    echo "FASTFLOW_METRICS_TOKEN=$(random 32)"
    echo "FASTFLOW_PORT=$port"
    echo "FASTFLOW_BASE_URL=$base_url"
    echo "FASTFLOW_SECURE_COOKIES=$secure"
    echo "DOCKER_GID=$gid"
    for name in FASTFLOW_IMAGE FASTFLOW_BASE_IMAGE FASTFLOW_POSTGRES_IMAGE FASTFLOW_PIPELINES_PATH \
                FASTFLOW_RUNNER_IMAGE FASTFLOW_RUNNER_NETWORK FASTFLOW_RUNNER_NETWORKS_ALLOWED \
                FASTFLOW_WARMUP_NETWORK ALLOWED_HOSTS FASTFLOW_LOG_FORMAT; do
        if [ -n "${!name:-}" ]; then echo "$name=${!name}"; fi
    done
} >"$out"
echo "[compose-env] wrote $out (Docker socket group $gid, port $port)" >&2
