#!/usr/bin/env bash
# start-docker.sh — make a working Docker engine available on this machine.
#
# Idempotent: if `docker info` already works, exits 0 immediately.
# Otherwise (as root): installs Debian's docker.io (+ iptables, debootstrap)
# from the Debian mirror, starts `dockerd` in the background (log:
# ${FASTFLOW_DOCKERD_LOG:-/tmp/dockerd.log}), waits up to
# ${FASTFLOW_DOCKERD_TIMEOUT:-60} s for `docker info`, and exits non-zero
# with a clear message if the engine never comes up.
#
# What works on the Fast-Flow dev/CI machines (Firecracker VM, Debian
# bookworm, cgroup v1, kernel with overlay + nf_tables), verified:
#   * storage driver : overlay2 (dockerd's own default choice; no flag needed)
#   * iptables       : enabled (default), iptables-nft backend
#   * networking     : the default *bridge* network works, containers reach
#                      PyPI over HTTPS through dockerd's NAT when the host CA
#                      bundle is mounted and SSL_CERT_FILE is set.
#   * MTU            : the host uplink (eth0) has MTU 1400 (< docker's default
#                      1500), so dockerd is started with `--mtu <uplink MTU>`
#                      (defensive: a 1500-MTU test network also worked here,
#                      but a too-large MTU is a classic cause of stalled TLS).
#   * DNS            : containers get the host's /etc/resolv.conf (a non-
#                      loopback resolver here), so name resolution just works.
#   => FASTFLOW_RUNNER_NETWORK=bridge   (the default; `host` also works)
#
# Fallbacks, tried in order only if the previous dockerd dies on start-up
# (other sandboxes that forbid iptables / overlayfs):
#   1. default flags (+ --mtu)
#   2. --iptables=false --ip-masq=false       (no NAT => use
#      FASTFLOW_RUNNER_NETWORK=host for containers that need the network)
#   3. 2. + --storage-driver=vfs --bridge=none (FASTFLOW_RUNNER_NETWORK=host)
# The flags that ended up working are written to /run/fastflow-dockerd.flags
# and the recommended network mode to /run/fastflow-runner-network.
#
# Env knobs: FASTFLOW_DOCKERD_LOG, FASTFLOW_DOCKERD_TIMEOUT,
#            FASTFLOW_DOCKERD_EXTRA_FLAGS (appended to every attempt).
set -euo pipefail

LOG="${FASTFLOW_DOCKERD_LOG:-/tmp/dockerd.log}"
TIMEOUT="${FASTFLOW_DOCKERD_TIMEOUT:-60}"
EXTRA_FLAGS="${FASTFLOW_DOCKERD_EXTRA_FLAGS:-}"
FLAGS_FILE=/run/fastflow-dockerd.flags
NETWORK_FILE=/run/fastflow-runner-network

say() { echo "[start-docker] $*" >&2; }
die() { echo "[start-docker] ERROR: $*" >&2; exit 1; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    say "docker engine already running"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "docker is not running and starting it needs root (run as root or via sudo)"

export DEBIAN_FRONTEND=noninteractive

# ---- 1. packages -----------------------------------------------------------
need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v docker >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
# containerd/runc come with docker.io; check them anyway (partial installs)
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
    # de-duplicate
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    say "installing: ${need_pkgs[*]}"
    # Try without `apt-get update` first (fast when lists are fresh); on failure
    # (no lists yet / stale lists -> 404) refresh the lists and retry.
    if ! apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/tmp/start-docker-apt.log 2>&1; then
        say "apt-get install failed with current package lists; running apt-get update"
        apt-get update -q >>/tmp/start-docker-apt.log 2>&1 \
            || say "warning: apt-get update reported errors (some third-party source may be unreachable)"
        apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >>/tmp/start-docker-apt.log 2>&1 \
            || { tail -n 30 /tmp/start-docker-apt.log >&2; die "apt-get install ${need_pkgs[*]} failed (log: /tmp/start-docker-apt.log)"; }
    fi
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"
command -v docker  >/dev/null 2>&1 || die "docker client not found after installing docker.io"

# ---- 2. kernel / host prerequisites (best effort) --------------------------
# cgroups: dockerd needs a mounted cgroup hierarchy.
if [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
    say "/sys/fs/cgroup is empty; mounting cgroup2"
    mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || say "warning: could not mount cgroup2"
fi
# iptables backend: prefer nft (Debian default); fall back to legacy if the
# kernel has no nf_tables but has the legacy tables.
if command -v update-alternatives >/dev/null 2>&1 && [ -x /usr/sbin/iptables-legacy ]; then
    if ! iptables -t nat -L -n >/dev/null 2>&1 && iptables-legacy -t nat -L -n >/dev/null 2>&1; then
        say "iptables (nft) unusable, switching to iptables-legacy"
        update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
        if [ -x /usr/sbin/ip6tables-legacy ]; then
            update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null || true
        fi
    fi
fi
# MTU: match the uplink (default-route) interface so bridged containers don't
# send packets bigger than the path allows (here eth0 has MTU 1400).
MTU_FLAG=()
uplink="$(ip -o route show default 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="dev"){print $(i+1); exit}}')" || true
if [ -n "${uplink:-}" ] && [ -r "/sys/class/net/$uplink/mtu" ]; then
    mtu="$(cat "/sys/class/net/$uplink/mtu")"
    if [ "$mtu" -gt 0 ] && [ "$mtu" -lt 1500 ]; then
        MTU_FLAG=(--mtu "$mtu")
    fi
fi

# ---- 3. start dockerd, with fallbacks --------------------------------------
DOCKERD_PID=
start_dockerd() {  # args: flags...
    # stale pid files from a previous (dead) dockerd/containerd block start-up
    for pf in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        if [ -f "$pf" ] && ! kill -0 "$(cat "$pf" 2>/dev/null)" 2>/dev/null; then rm -f "$pf"; fi
    done
    say "starting: dockerd $*   (log: $LOG)"
    echo "=== $(date -Is) dockerd $* ===" >>"$LOG"
    # setsid + nohup: keep running after this script / the calling shell exits
    # shellcheck disable=SC2086
    setsid nohup dockerd "$@" $EXTRA_FLAGS >>"$LOG" 2>&1 </dev/null &
    DOCKERD_PID=$!
}
wait_docker() {  # returns 0 when up, 1 if dockerd died, 2 on timeout
    local deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if docker info >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then return 1; fi
        sleep 1
    done
    return 2
}

# If a dockerd is already running (but not answering yet), just wait for it.
if pgrep -x dockerd >/dev/null 2>&1; then
    DOCKERD_PID="$(pgrep -x dockerd | head -n1)"
    say "dockerd already running (pid $DOCKERD_PID); waiting for it"
    rc=0; wait_docker || rc=$?
    [ "$rc" -eq 0 ] && { say "docker engine is up"; exit 0; }
    [ "$rc" -eq 2 ] && die "existing dockerd (pid $DOCKERD_PID) did not answer within ${TIMEOUT}s; see $LOG"
fi

attempts=(
    "bridge|${MTU_FLAG[*]}"
    "host|${MTU_FLAG[*]} --iptables=false --ip-masq=false"
    "host|--iptables=false --ip-masq=false --bridge=none --storage-driver=vfs"
)
for attempt in "${attempts[@]}"; do
    net="${attempt%%|*}"
    # shellcheck disable=SC2206
    flags=(${attempt#*|})
    start_dockerd "${flags[@]}"
    rc=0; wait_docker || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "${flags[*]}" >"$FLAGS_FILE" 2>/dev/null || true
        echo "$net" >"$NETWORK_FILE" 2>/dev/null || true
        driver="$(docker info --format '{{.Driver}}' 2>/dev/null || echo '?')"
        say "docker engine is up (pid $DOCKERD_PID, storage driver: $driver, flags: ${flags[*]:-<none>})"
        say "recommended FASTFLOW_RUNNER_NETWORK=$net"
        exit 0
    fi
    if [ "$rc" -eq 2 ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        tail -n 30 "$LOG" >&2 || true
        die "dockerd (flags: ${flags[*]:-<none>}) did not answer 'docker info' within ${TIMEOUT}s; see $LOG"
    fi
    say "dockerd exited during start-up with flags: ${flags[*]:-<none>}; last log lines:"
    tail -n 8 "$LOG" >&2 || true
done
die "could not start dockerd with any known flag set; see $LOG"
