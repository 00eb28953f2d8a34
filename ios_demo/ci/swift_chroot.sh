#!/bin/sh
# Swift 6 toolchain for EMOCore's tests on a Debian 12 host: a Debian 13 (trixie) chroot made with debootstrap,
# with Debian's `swiftlang` plus the C/C++ headers swift needs to link (libc6-dev, libstdc++-14-dev).
#
#   ios_demo/ci/swift_chroot.sh setup            create the chroot once (about 2.5 GB, a few minutes); idempotent
#   ios_demo/ci/swift_chroot.sh test PACKAGE_DIR [DATA_DIR]
#       copy the Swift package (and DATA_DIR, as $EMO_TESTDATA) in, run `swift test`; DATA_DIR/out comes back
#
# The chroot lives outside the clone (default ~/.cache/emo-mobile/trixie-chroot, override with EMO_SWIFT_CHROOT)
# so every clone on the machine reuses it. Needs root (debootstrap, chroot). Only /proc is mounted inside, in a
# private mount namespace for one test run; the package is copied in (nothing of the host is bound into the chroot).
set -eu

ROOT="${EMO_SWIFT_CHROOT:-$HOME/.cache/emo-mobile/trixie-chroot}"
MIRROR="${EMO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="swiftlang,libc6-dev,libstdc++-14-dev,ca-certificates"
STAMP="$ROOT/.emo-swift-ready"

die() { echo "swift_chroot: $*" >&2; exit 2; }

setup() {
    [ -f "$STAMP" ] && return 0
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot); run 'sudo $0 setup' once"
    command -v debootstrap >/dev/null || die "debootstrap is missing; install it with 'make sysdeps'"
    parent="$(dirname "$ROOT")"
    mkdir -p "$parent"
    tmp="$ROOT.tmp-$$"
    trap 'umount "$tmp/proc" 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM
    echo "swift_chroot: creating the Debian 13 chroot with swiftlang in $ROOT (once; about 2.5 GB)" >&2
    debootstrap --variant=minbase --include="$PACKAGES" trixie "$tmp" "$MIRROR" >"$parent/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $parent/debootstrap.log"
    # the swift driver finds its libraries through $ORIGIN, which glibc reads from /proc/self/exe
    mount -t proc proc "$tmp/proc"
    chroot "$tmp" /usr/bin/env PATH=/usr/bin:/bin HOME=/tmp swift --version >"$parent/swift-version.log" 2>&1 \
        || die "swift does not run inside the new chroot; see $parent/swift-version.log"
    umount "$tmp/proc"
    rm -rf "$tmp/var/cache/apt/archives"/*.deb
    touch "$tmp/.emo-swift-ready"
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
    trap - EXIT INT TERM
}

run_tests() {
    package="$(cd "$1" && pwd)"
    data="${2:-}"
    [ -f "$package/Package.swift" ] || die "$package has no Package.swift"
    [ -f "$STAMP" ] || die "no Swift chroot at $ROOT; run '$0 setup' (or 'make swift-chroot') first"
    [ "$(id -u)" = 0 ] || die "needs root (chroot)"
    # one work folder per package path (several clones may test at once); .build is kept for incremental builds
    name="$(basename "$package")-$(printf '%s' "$package" | cksum | cut -d' ' -f1)"
    work="$ROOT/work/$name"
    mkdir -p "$work"
    find "$work" -mindepth 1 -maxdepth 1 ! -name .build -exec rm -rf {} +
    (cd "$package" && tar --exclude=.build -cf - .) | (cd "$work" && tar -xf -)
    env=""
    if [ -n "$data" ]; then
        mkdir -p "$work/.testdata"
        (cd "$data" && tar -cf - .) | (cd "$work/.testdata" && tar -xf -)
        env="EMO_TESTDATA=/work/$name/.testdata"
    fi
    # /proc in a private mount namespace: the swift driver needs it, and it vanishes with this process
    status=0
    unshare --mount --fork /bin/sh -c 'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/env -i \
        PATH=/usr/bin:/bin HOME=/tmp $3 /bin/sh -c "cd /work/$2 && swift test"' sh "$ROOT" "$name" "$env" || status=$?
    if [ -n "$data" ] && [ -d "$work/.testdata/out" ]; then
        mkdir -p "$data/out" && cp -r "$work/.testdata/out/." "$data/out/"
    fi
    return $status
}

case "${1:-}" in
    setup) setup ;;
    test) [ $# -ge 2 ] || die "usage: $0 test PACKAGE_DIR [DATA_DIR]"; shift; run_tests "$@" ;;
    *) die "usage: $0 setup | test PACKAGE_DIR [DATA_DIR]" ;;
esac
