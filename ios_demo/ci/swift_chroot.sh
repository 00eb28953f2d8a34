#!/bin/sh
# Swift 6 toolchain for EMOCore's tests on a Debian 12 host: a Debian 13 (trixie) chroot made with debootstrap,
# with Debian's `swiftlang` plus the C/C++ headers swift needs to link (libc6-dev, libstdc++-14-dev).
#
#   ios_demo/ci/swift_chroot.sh setup            create the chroot once (about 2.5 GB, a few minutes); idempotent
#   ios_demo/ci/swift_chroot.sh test PACKAGE_DIR  copy the Swift package in, run `swift test`, print its output
#
# The chroot lives outside the clone (default ~/.cache/emo-mobile/trixie-chroot, override with EMO_SWIFT_CHROOT)
# so every clone on the machine reuses it. Needs root (debootstrap, chroot). Only /proc is mounted inside, for the
# duration of one test run; the package is copied in (nothing of the host is bound into the chroot).
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
    chroot "$tmp" /usr/bin/env PATH=/usr/bin:/bin HOME=/tmp swift --version >"$parent/swift-version.log" 2>&1 \
        || { cp -r "$tmp" "$ROOT.failed" 2>/dev/null; die "swift does not run inside the new chroot (kept in $ROOT.failed; see $parent/swift-version.log)"; }
    rm -rf "$tmp/var/cache/apt/archives"/*.deb
    touch "$tmp/.emo-swift-ready"
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
    trap - EXIT INT TERM
}

run_tests() {
    package="$1"
    [ -f "$package/Package.swift" ] || die "$package has no Package.swift"
    [ -f "$STAMP" ] || die "no Swift chroot at $ROOT; run '$0 setup' (or 'make swift-chroot') first"
    [ "$(id -u)" = 0 ] || die "needs root (chroot)"
    work="$ROOT/work/$(basename "$package")"
    mkdir -p "$work"
    # keep .build between runs (incremental builds); refresh the sources and test data
    find "$work" -mindepth 1 -maxdepth 1 ! -name .build -exec rm -rf {} +
    (cd "$package" && tar --exclude=.build -cf - .) | (cd "$work" && tar -xf -)
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT INT TERM
    shift
    chroot "$ROOT" /bin/sh -c "cd /work/$(basename "$package") && HOME=/tmp swift test $*"
}

case "${1:-}" in
    setup) setup ;;
    test) [ $# -ge 2 ] || die "usage: $0 test PACKAGE_DIR"; shift; run_tests "$@" ;;
    *) die "usage: $0 setup | test PACKAGE_DIR" ;;
esac
