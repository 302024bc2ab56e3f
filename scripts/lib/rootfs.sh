# rootfs.sh — sourced by build-runner-image.sh and build-base-image.sh: a Debian minbase root
# filesystem from the mirror, trimmed, cached as a tarball keyed by its recipe (so changing an
# image's other inputs never re-runs debootstrap). The caller sets SUITE, MIRROR, DEB_ARCH and
# CACHE_DIR and defines say() and die().

rootfs_debootstrap() {  # DIR PACKAGES: minbase + PACKAGES, trimmed, host-specific files blanked
    local dir="$1" packages="$2"
    debootstrap --variant=minbase --arch="$DEB_ARCH" --include="$packages" \
        "$SUITE" "$dir" "$MIRROR" || return 1   # (set -e is off inside `f || ...`)
    # apt sources for anyone extending the image
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$dir/etc/apt/sources.list"
    # keep it small: package caches, lists, docs, man pages, locales, logs
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
           "$dir"/var/lib/apt/lists/* "$dir"/var/log/* "$dir"/var/cache/debconf/*-old \
           "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
           "$dir"/usr/share/locale/* "$dir"/usr/share/lintian "$dir"/usr/share/bug \
           "$dir"/debootstrap 2>/dev/null || true
    # host-specific files debootstrap copied in; docker provides these at run time
    : >"$dir/etc/resolv.conf"; : >"$dir/etc/hostname"
    rm -f "$dir/etc/machine-id"; : >"$dir/etc/machine-id"
}

rootfs_cached() {  # NAME PYTHON_VERSION BUILD_FUNCTION RECIPE_TEXT → prints the tarball's path
    local name="$1" want_py="$2" build="$3" recipe="$4" key tar dir log have started=$SECONDS
    key="$( { declare -f rootfs_debootstrap "$build"; echo "$recipe $SUITE $DEB_ARCH"; } \
        | sha256sum | cut -c1-16)"
    tar="$CACHE_DIR/$name-$SUITE-$DEB_ARCH-$key.tar"
    if [ -s "$tar" ]; then
        say "using cached rootfs $tar"
        echo "$tar"; return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        say "installing debootstrap"
        apt-get install -y -q debootstrap >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 || true; apt-get install -y -q debootstrap >/dev/null; }
    }
    dir="$(mktemp -d "$CACHE_DIR/$name.XXXXXX")"
    log="$CACHE_DIR/$name-debootstrap.log"
    say "debootstrap $SUITE ($DEB_ARCH, minbase + $recipe) from $MIRROR ..."
    "$build" "$dir" >"$log" 2>&1 \
        || { rm -rf "$dir"; tail -n 30 "$log" >&2; die "debootstrap failed (log: $log)"; }
    have="$(chroot "$dir" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$have" = "$want_py" ] || { rm -rf "$dir"; die "rootfs python3 is $have, expected $want_py"; }
    tar -C "$dir" --numeric-owner -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$dir"
    # drop tarballs of older recipes
    find "$CACHE_DIR" -maxdepth 1 -name "$name-$SUITE-$DEB_ARCH-*.tar" ! -name "$(basename "$tar")" -delete
    say "rootfs cached: $tar ($(du -h "$tar" | cut -f1), $((SECONDS - started))s)"
    echo "$tar"
}
