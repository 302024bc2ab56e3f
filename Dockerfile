# Fast-Flow: one image for every role (see deploy/fastflow):
#   docker run IMAGE                    web server: gunicorn, gthread workers, whitenoise static
#   docker run IMAGE runscheduler       the engine (give it the Docker socket, see README "Deploy")
#   docker run IMAGE migrate --no-input one-off database migration (also on every upgrade)
# Settings come from FASTFLOW_* / DATABASE_URL / SECRET_KEY environment variables only.
#
# BASE_IMAGE: any Debian-based Python >= 3.11 with the venv module. Without an image registry,
# scripts/build-base-image.sh builds a local one (fastflow-base:python3.11-bookworm).
# Behind a TLS-intercepting proxy, put its CA bundle at deploy/build-ca.pem: pip trusts it in
# the build stage; it never reaches the final image.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Dependencies first: this layer is rebuilt only when pyproject.toml changes. With the
# `kubernetes` extra, so the same image runs an engine with FASTFLOW_EXECUTOR=kubernetes.
COPY pyproject.toml deploy/build-ca.pe[m] /build/
RUN set -eu; \
    if [ -s /build/build-ca.pem ]; then export PIP_CERT=/build/build-ca.pem; fi; \
    python3 -m venv /opt/venv; \
    python3 -c 'import tomllib; p = tomllib.load(open("/build/pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["kubernetes"]))' >/build/requirements.txt; \
    /opt/venv/bin/pip install --no-compile --requirement /build/requirements.txt; \
    /opt/venv/bin/pip uninstall --yes pip setuptools
COPY . /app
# Static files at build time (whitenoise serves them, hashed names, compressed); bytecode
# compiled once, since the app runs as a user that cannot write next to the code.
RUN set -eu; \
    rm -f /app/deploy/build-ca.pem; \
    cd /app; \
    DEBUG=false SECRET_KEY=collectstatic-only-not-a-secret \
    FASTFLOW_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    FASTFLOW_DATA_DIR=/tmp/build-data FASTFLOW_STATIC_ROOT=/app/staticfiles \
        /opt/venv/bin/python manage.py collectstatic --no-input -v 0; \
    rm -rf /tmp/build-data; \
    /opt/venv/bin/python -m compileall -q -j 0 /opt/venv /app >/dev/null

FROM ${BASE_IMAGE}
# git and ssh for git sync (the engine fetches the pipelines repository; docs/git-sync.md): the
# local base image has them already, an official Python image gets them from Debian.
RUN set -eu; \
    if ! command -v git >/dev/null || ! command -v ssh-keyscan >/dev/null; then \
        apt-get update -qq; \
        apt-get install -y -qq --no-install-recommends git openssh-client >/dev/null; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    if command -v useradd >/dev/null; then \
        groupadd --system --gid 10001 fastflow; \
        useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin fastflow; \
    else \
        echo 'fastflow:x:10001:10001::/data:/usr/sbin/nologin' >>/etc/passwd; \
        echo 'fastflow:x:10001:' >>/etc/group; \
    fi; \
    mkdir -p /data /pipelines; \
    chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY deploy/fastflow /usr/local/bin/fastflow
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBUG=false \
    FASTFLOW_DATA_DIR=/data \
    FASTFLOW_PIPELINES_DIR=/pipelines \
    FASTFLOW_STATIC_ROOT=/app/staticfiles \
    FASTFLOW_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/fastflow", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/fastflow"]
CMD ["web"]
# Last, so a new revision only adds a metadata layer.
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="Fast-Flow" \
      org.opencontainers.image.description="Self-hosted orchestrator for Python pipelines (web, engine and migrations in one image)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
