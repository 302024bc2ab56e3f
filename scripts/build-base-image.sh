#!/usr/bin/env bash
# build-base-image.sh — a local stand-in for the official Python base image, built with NO
# image registry, for the top-level Dockerfile:
#
#   docker build --build-arg BASE_IMAGE=fastflow-base:python3.11-bookworm -t fastflow .
#
# Recipe (scripts/lib/rootfs.sh, shared with build-runner-image.sh): debootstrap
# --variant=minbase bookworm + python3, python3-venv and ca-certificates from the Debian mirror,
# trimmed, packed into a rootfs tarball cached under ${FASTFLOW_IMAGE_CACHE:-/var/cache/
# fastflow-runner} (keyed by a hash of the recipe), then `docker import`. The image is labelled with the hash of this script: when
# it matches, nothing is done (about 0.1 s). FASTFLOW_FORCE_REBUILD=1 re-imports (the cached
# rootfs is reused).
#
# Prints the image reference on stdout (progress goes to stderr).
# Env knobs: FASTFLOW_IMAGE_CACHE, FASTFLOW_DEBIAN_MIRROR, FASTFLOW_FORCE_REBUILD.
set -euo pipefail

SUITE="bookworm"
PYTHON_VERSION="3.11"  # Debian bookworm's python3; checked below
# git and openssh-client: the engine drives them for git sync (docs/git-sync.md).
PACKAGES="python3,python3-venv,ca-certificates,git,openssh-client"
IMAGE_TAG="fastflow-base:python${PYTHON_VERSION}-${SUITE}"
LABEL_NS="org.fastflow.base"
MIRROR="${FASTFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${FASTFLOW_IMAGE_CACHE:-/var/cache/fastflow-runner}"

say() { echo "[build-base-image] $*" >&2; }
die() { echo "[build-base-image] ERROR: $*" >&2; exit 1; }

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
INPUTS_HASH="$(cat "$SCRIPT_PATH" "$(dirname "$SCRIPT_PATH")/lib/rootfs.sh" | sha256sum | cut -c1-64)"

docker info >/dev/null 2>&1 || "$(dirname "$SCRIPT_PATH")/start-docker.sh" >&2 \
    || die "no Docker engine (scripts/start-docker.sh failed)"

up_to_date() {
    [ "${FASTFLOW_FORCE_REBUILD:-0}" != "1" ] && [ "$(docker image inspect --format \
        "{{ index .Config.Labels \"${LABEL_NS}.inputs-hash\" }}" "$IMAGE_TAG" 2>/dev/null)" = "$INPUTS_HASH" ]
}
if up_to_date; then
    say "$IMAGE_TAG is up to date (inputs hash ${INPUTS_HASH:0:12})"
    echo "$IMAGE_TAG"; exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the rootfs needs root (debootstrap)"
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.base.lock"
flock 9
if up_to_date; then say "$IMAGE_TAG was built meanwhile"; echo "$IMAGE_TAG"; exit 0; fi

case "$(uname -m)" in
    x86_64) DEB_ARCH=amd64 ;;
    aarch64) DEB_ARCH=arm64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
esac

# shellcheck source=lib/rootfs.sh
. "$(dirname "$SCRIPT_PATH")/lib/rootfs.sh"
build_rootfs() {  # $1 = target dir
    rootfs_debootstrap "$1" "$PACKAGES"
}
started=$SECONDS
ROOTFS_TAR="$(rootfs_cached base-rootfs "$PYTHON_VERSION" build_rootfs "$PACKAGES")"

# The environment an official python image documents, so the Dockerfile works on either.
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL ${LABEL_NS}.inputs-hash=${INPUTS_HASH}" \
    --change "LABEL ${LABEL_NS}.python-version=${PYTHON_VERSION}" \
    --change "LABEL ${LABEL_NS}.debian-suite=${SUITE}" \
    --message "fastflow base: debootstrap $SUITE minbase + $PACKAGES" \
    "$ROOTFS_TAR" "$IMAGE_TAG" >/dev/null
docker run --rm --network none "$IMAGE_TAG" python3 -c 'import venv, ssl, sqlite3' \
    || die "$IMAGE_TAG lacks venv, ssl or sqlite3"
docker image prune -f --filter "label=${LABEL_NS}.python-version" >/dev/null 2>&1 || true
say "built $IMAGE_TAG ($(docker image inspect --format '{{.Size}}' "$IMAGE_TAG" \
    | awk '{printf "%.0f MB", $1/1e6}'), $((SECONDS - started)) s)"
echo "$IMAGE_TAG"
