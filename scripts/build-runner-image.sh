#!/usr/bin/env bash
# build-runner-image.sh — build the Fast-Flow runner image with NO image registry.
#
#   fastflow-runner:python${PYTHON_VERSION}   (here: fastflow-runner:python3.11)
#
# Recipe:
#   1. debootstrap --variant=minbase bookworm + python3 + ca-certificates from the
#      Debian mirror, trimmed, packed into a rootfs tarball that is cached under
#      ${FASTFLOW_IMAGE_CACHE:-/var/cache/fastflow-runner} (keyed by a hash of the
#      rootfs recipe, so changing only UV_VERSION does not re-run debootstrap);
#   2. the `uv` binary taken from the `uv` wheel on PyPI (pip download, pinned
#      by UV_VERSION, also cached), appended to a copy of that tarball as
#      /usr/local/bin/uv;
#   3. `docker import` with --change for ENV/LABEL/WORKDIR/CMD.
#
# Caching: if ${IMAGE_TAG} exists and its label org.fastflow.runner.inputs-hash
# equals sha256(this script + UV_VERSION), nothing is done. FASTFLOW_FORCE_REBUILD=1
# forces a rebuild (still reusing the cached rootfs / uv wheel).
#
# Usage: scripts/build-runner-image.sh [--verify]
#   --verify   after building (or on a cache hit) run the end-to-end checks in
#              the locked-down mode the engine uses (non-root, read-only rootfs,
#              cap-drop ALL, ...) including a real `uv run --with-requirements`
#              against PyPI (needs the host CA bundle, see README-docker.md).
#
# Env knobs: FASTFLOW_IMAGE_CACHE, FASTFLOW_DEBIAN_MIRROR, FASTFLOW_FORCE_REBUILD,
#            FASTFLOW_RUNNER_NETWORK (for --verify; default bridge),
#            FASTFLOW_CA_BUNDLE (for --verify; default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

# ---- pinned inputs ---------------------------------------------------------
UV_VERSION="0.13.9"          # the one pin for uv (pip index versions uv)
PYTHON_VERSION="3.11"        # what Debian bookworm's python3 is; checked below
SUITE="bookworm"
ROOTFS_PACKAGES="python3,ca-certificates"
IMAGE_REPO="fastflow-runner"
IMAGE_TAG="${IMAGE_REPO}:python${PYTHON_VERSION}"
LABEL_NS="org.fastflow.runner"

MIRROR="${FASTFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${FASTFLOW_IMAGE_CACHE:-/var/cache/fastflow-runner}"

say() { echo "[build-runner-image] $*" >&2; }
die() { echo "[build-runner-image] ERROR: $*" >&2; exit 1; }
trap 'echo "[build-runner-image] FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

VERIFY=0
for arg in "$@"; do
    case "$arg" in
        --verify) VERIFY=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
SCRIPT_DIR="$(dirname "$SCRIPT_PATH")"
INPUTS_HASH="$( { cat "$SCRIPT_PATH" "$SCRIPT_DIR/lib/rootfs.sh"; printf 'uv=%s\n' "$UV_VERSION"; } | sha256sum | cut -c1-64)"

# ---- docker engine ---------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    say "docker engine not reachable; running start-docker.sh"
    "$SCRIPT_DIR/start-docker.sh" || die "could not start the docker engine"
fi

# ---- verification (locked-down mode, as the engine runs pipelines) ---------
verify_image() {
    local net="${FASTFLOW_RUNNER_NETWORK:-$(cat /run/fastflow-runner-network 2>/dev/null || echo bridge)}"
    local ca="${FASTFLOW_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
    local work; work="$(mktemp -d /tmp/fastflow-verify.XXXXXX)"
    mkdir -p "$work/app" "$work/uv-cache"
    printf 'six\n' >"$work/app/requirements.txt"
    chmod 0755 "$work" "$work/app"; chmod 0644 "$work/app/requirements.txt"
    chmod 0777 "$work/uv-cache"       # container runs as 65534, must be able to write
    local run=(docker run --rm --user 65534:65534 --read-only --tmpfs /tmp
               --cap-drop ALL --security-opt no-new-privileges --pids-limit 256
               --network "$net"
               -v "$work/app:/app:ro" -v "$work/uv-cache:/cache/uv" -e UV_CACHE_DIR=/cache/uv
               -v "$ca:/etc/ssl/certs/ca-certificates.crt:ro" -e SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
               -w /app "$IMAGE_TAG")
    say "verify: uv --version";                "${run[@]}" uv --version
    say "verify: uv run --no-project python";  "${run[@]}" uv run --no-project python -c 'print(1)'
    local t0 t1 t2
    t0=$EPOCHREALTIME
    say "verify: uv run --with-requirements (cold cache, network $net)"
    "${run[@]}" uv run --no-project --with-requirements /app/requirements.txt python -c 'import six; print("six", six.__version__)'
    t1=$EPOCHREALTIME
    say "verify: same again (warm cache)"
    "${run[@]}" uv run --no-project --with-requirements /app/requirements.txt python -c 'import six; print("six", six.__version__)'
    t2=$EPOCHREALTIME
    say "verify: cold run $(awk "BEGIN{printf \"%.2f\", $t1-$t0}")s, warm run $(awk "BEGIN{printf \"%.2f\", $t2-$t1}")s"
    rm -rf "$work"
    say "verify: OK"
}

# ---- cache hit? ------------------------------------------------------------
existing_hash="$(docker image inspect --format "{{ index .Config.Labels \"${LABEL_NS}.inputs-hash\" }}" "$IMAGE_TAG" 2>/dev/null || true)"
if [ "${FASTFLOW_FORCE_REBUILD:-0}" != "1" ] && [ "$existing_hash" = "$INPUTS_HASH" ]; then
    say "$IMAGE_TAG is up to date (inputs hash ${INPUTS_HASH:0:12}); skipping build"
    [ "$VERIFY" -eq 1 ] && verify_image
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the rootfs needs root (debootstrap)"
mkdir -p "$CACHE_DIR"
# one build at a time per cache dir
exec 9>"$CACHE_DIR/.lock"
flock 9
# another build may have finished while we waited for the lock
existing_hash="$(docker image inspect --format "{{ index .Config.Labels \"${LABEL_NS}.inputs-hash\" }}" "$IMAGE_TAG" 2>/dev/null || true)"
if [ "${FASTFLOW_FORCE_REBUILD:-0}" != "1" ] && [ "$existing_hash" = "$INPUTS_HASH" ]; then
    say "$IMAGE_TAG was built concurrently; skipping build"
    [ "$VERIFY" -eq 1 ] && verify_image
    exit 0
fi

case "$(uname -m)" in
    x86_64)  DEB_ARCH=amd64; WHEEL_PLATFORM=manylinux_2_17_x86_64 ;;
    aarch64) DEB_ARCH=arm64; WHEEL_PLATFORM=manylinux_2_17_aarch64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
esac

# ---- 1. rootfs tarball (cached, scripts/lib/rootfs.sh) ------------------------
# shellcheck source=lib/rootfs.sh
. "$SCRIPT_DIR/lib/rootfs.sh"
build_rootfs() {  # $1 = target dir; everything that shapes the rootfs lives here
    rootfs_debootstrap "$1" "$ROOTFS_PACKAGES" || return 1
    mkdir -p "$1/app" "$1/cache/uv" "$1/usr/local/bin"
    chmod 1777 "$1/tmp" "$1/cache/uv"
}
t_start=$SECONDS
ROOTFS_TAR="$(rootfs_cached rootfs "$PYTHON_VERSION" build_rootfs "$ROOTFS_PACKAGES")"

# ---- 2. uv binary from the PyPI wheel (cached) -------------------------------
UV_DIR="$CACHE_DIR/uv-$UV_VERSION-$WHEEL_PLATFORM"
if [ ! -x "$UV_DIR/uv" ]; then
    say "downloading uv==$UV_VERSION wheel ($WHEEL_PLATFORM) from PyPI"
    python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip is needed on the host to download the uv wheel"
    tmp_uv="$(mktemp -d "$CACHE_DIR/uv.XXXXXX")"
    trap 'rm -rf "$tmp_uv"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$WHEEL_PLATFORM" \
        --python-version "$PYTHON_VERSION" --implementation py --abi none \
        "uv==$UV_VERSION" -d "$tmp_uv/whl" || die "pip download uv==$UV_VERSION failed"
    whl="$(find "$tmp_uv/whl" -maxdepth 1 -name "uv-$UV_VERSION-*.whl" | head -n1)"
    [ -n "$whl" ] || die "no uv $UV_VERSION wheel downloaded"
    python3 - "$whl" "$tmp_uv/out" <<'EOF'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(".data/scripts/uv")]
    if not names:
        sys.exit("uv binary not found in wheel (expected uv-*.data/scripts/uv)")
    z.extract(names[0], out)
    print(names[0])
EOF
    mkdir -p "$UV_DIR"
    install -m 0755 "$tmp_uv"/out/uv-*.data/scripts/uv "$UV_DIR/uv.tmp"
    sha256sum "$whl" | awk '{print $1}' >"$UV_DIR/wheel.sha256"
    mv "$UV_DIR/uv.tmp" "$UV_DIR/uv"
    rm -rf "$tmp_uv"; trap - EXIT
fi
"$UV_DIR/uv" --version | grep -q "uv $UV_VERSION" || die "cached uv binary is not version $UV_VERSION"

# ---- 3. assemble + docker import ---------------------------------------------
work="$(mktemp -d "$CACHE_DIR/image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp "$ROOTFS_TAR" "$work/rootfs.tar"
mkdir -p "$work/add/usr/local/bin"
install -m 0755 "$UV_DIR/uv" "$work/add/usr/local/bin/uv"
tar -C "$work/add" --numeric-owner --owner=0 --group=0 -rf "$work/rootfs.tar" ./usr/local/bin/uv

say "docker import -> $IMAGE_TAG"
docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV HOME=/tmp' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV UV_PYTHON_DOWNLOADS=never' \
    --change 'ENV UV_PYTHON=/usr/bin/python3' \
    --change 'WORKDIR /app' \
    --change 'CMD ["python3"]' \
    --change "LABEL ${LABEL_NS}.inputs-hash=${INPUTS_HASH}" \
    --change "LABEL ${LABEL_NS}.uv-version=${UV_VERSION}" \
    --change "LABEL ${LABEL_NS}.python-version=${PYTHON_VERSION}" \
    --change "LABEL ${LABEL_NS}.debian-suite=${SUITE}" \
    --message "fastflow runner: debootstrap $SUITE minbase + $ROOTFS_PACKAGES + uv $UV_VERSION" \
    "$work/rootfs.tar" "$IMAGE_TAG" >/dev/null
rm -rf "$work"; trap - EXIT

# ---- smoke test ---------------------------------------------------------------
got="$(docker run --rm --network none "$IMAGE_TAG" sh -c 'python3 -c "import sys;print(\"%d.%d\"%sys.version_info[:2])" && uv --version')"
echo "$got" | head -n1 | grep -qx "$PYTHON_VERSION" || die "image python is not $PYTHON_VERSION: $got"
echo "$got" | grep -q "uv $UV_VERSION" || die "image uv is not $UV_VERSION: $got"
say "built $IMAGE_TAG ($(docker image inspect --format '{{.Size}}' "$IMAGE_TAG" | awk '{printf "%.0f MB", $1/1e6}'), $((SECONDS - t_start))s): $(echo "$got" | tr '\n' ' ')"

# remove dangling images left by previous builds of this tag
docker image prune -f --filter "label=${LABEL_NS}.python-version" >/dev/null 2>&1 || true

[ "$VERIFY" -eq 1 ] && verify_image
exit 0
