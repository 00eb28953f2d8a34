#!/bin/sh
# A Debian 12 arm64 root in which `emo-verify ARTIFACT --arm CPU` runs the aarch64 builds of the runtimes (the same
# wheels a phone's app links, compiled for Arm) under qemu user-mode emulation, one CPU model at a time.
#
#   tools/arm_root.sh setup PIP PIN...   create or update the root (needs root); idempotent and resumable
#       PIP   the host's pip (it downloads the aarch64 wheels from PyPI, as the host resolves its own)
#       PIN   onnxruntime==X ai-edge-litert==Y numpy==Z: the versions the host venv uses
#   tools/arm_root.sh check PIN...       exit 0 if the cached root is complete and holds exactly these versions
#
# Layout (outside the clone, so every clone on the machine reuses it; like ios_demo/ci/swift_chroot.sh):
#   ~/.cache/emo-mobile/arm64-root/                debootstrap --arch=arm64 --variant=minbase of bookworm
#       opt/emo/venv/                              python3 venv with the pinned aarch64 wheels (installed by pip
#                                                  inside the root, offline, from the wheels downloaded here)
#       opt/emo/qemu/qemu-aarch64                  qemu 10 (static, bookworm-backports' qemu-user, unpacked with
#                                                  dpkg-deb -x: the system's qemu is left alone); emo-verify runs it
#                                                  explicitly with -cpu MODEL. It gives the guest an Arm /proc/cpuinfo
#                                                  of that model (qemu 7.2 shows the host's x86 one, and its `max`
#                                                  model computes int8 TFLite wrongly through SME)
#       .emo-arm-ready                             stamp: the versions, written last (no stamp: not usable)
#   ~/.cache/emo-mobile/arm64-wheels/              the downloaded wheels (kept: a re-run installs offline)
#
# The second stage of debootstrap and pip run under the system's qemu-user-static through binfmt_misc (mounted and
# enabled here when missing). Every mount the setup makes lives in a private mount namespace (unshare): nothing
# stays mounted when it ends, however it ends. Stages are marked in the root (.emo-base-ready); a root without the
# marker is half-made and is made again; the venv is built beside the old one and swapped in.
set -eu

CACHE="$HOME/.cache/emo-mobile"
ROOT="$CACHE/arm64-root"
WHEELS="$CACHE/arm64-wheels"
MIRROR="http://deb.debian.org/debian"
SUITE=bookworm
BACKPORTS_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
STAMP="$ROOT/.emo-arm-ready"
BASE_MARK="$ROOT/.emo-base-ready"
# the guest's CPython (Debian 12: 3.11) and glibc (2.36): the wheel tags pip downloads for
PY_TAG=311
GLIBC_MINORS="36 35 34 33 32 31 30 29 28 27 26 25 24 23 22 21 20 19 18 17"

die() { echo "arm_root: $*" >&2; exit 2; }
say() { echo "arm_root: $*" >&2; }

# "numpy==2.4.6 onnxruntime==1.32.0 ..." sorted, one per line: what the stamp records besides qemu and the suite
pins_text() { printf '%s\n' "$@" | sort; }

stamp_text() {
    printf 'suite %s\nqemu %s\n' "$SUITE" "$(cat "$ROOT/opt/emo/qemu/VERSION" 2>/dev/null || echo none)"
    pins_text "$@"
}

check() {
    [ $# -gt 0 ] || die "usage: $0 check PIN..."
    [ -f "$STAMP" ] && [ -f "$BASE_MARK" ] || return 1
    [ "$(sed -n '3,$p' "$STAMP")" = "$(pins_text "$@")" ]
}

# refuse to delete a folder that has something mounted under it (a crash of an older tool): rm -rf would descend
not_mounted() {
    if awk -v p="$1" '$2 == p || index($2, p "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        die "something is mounted under $1 (see /proc/mounts); unmount it first (umount -R $1)"
    fi
}

enable_binfmt() {
    if [ ! -f /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc (a container without it?); arm64 binaries cannot run here"
    fi
    command -v update-binfmts >/dev/null || die "update-binfmts is missing; install binfmt-support (make sysdeps)"
    [ -f /usr/share/binfmts/qemu-aarch64 ] || die "qemu-user-static is missing; install it (make sysdeps)"
    update-binfmts --enable qemu-aarch64 2>/dev/null || true  # "already enabled" is an error to it
    grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
        || die "binfmt_misc has no enabled qemu-aarch64 entry after update-binfmts --enable qemu-aarch64"
}

# stage 1: the Debian root (debootstrap, both stages), in a private mount namespace
make_base() {
    not_mounted "$ROOT"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    say "debootstrap of Debian 12 arm64 (minbase + python3) into $ROOT (once; a few minutes)"
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,python3-pip \
        "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/arm64-debootstrap.log" 2>&1 \
        || die "debootstrap (first stage) failed; see $CACHE/arm64-debootstrap.log"
    chroot "$ROOT" /bin/true 2>/dev/null || die "arm64 binaries do not run through binfmt_misc (qemu-aarch64)"
    unshare --mount --propagation private chroot "$ROOT" /debootstrap/debootstrap --second-stage \
        >>"$CACHE/arm64-debootstrap.log" 2>&1 \
        || die "debootstrap (second stage, under qemu) failed; see $CACHE/arm64-debootstrap.log"
    rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"*
    touch "$BASE_MARK"
}

# qemu 10 from bookworm-backports, through a private apt configuration (the host's sources stay as they are)
fetch_qemu() {
    apt_dir="$CACHE/arm64-apt"
    rm -rf "$apt_dir"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    echo "deb [signed-by=$BACKPORTS_KEYRING] $MIRROR $SUITE-backports main" >"$apt_dir/sources.list"
    set -- -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir" -o Dir::State::Status=/dev/null \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root
    apt-get "$@" -q update >"$apt_dir/apt.log" 2>&1 \
        || die "apt-get update of $SUITE-backports failed; see $apt_dir/apt.log"
    version="$(apt-cache "$@" show qemu-user 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)"
    case "$version" in
        *:10.*|*:1[1-9].*) ;;
        *) die "$SUITE-backports offers qemu-user '$version', not qemu 10 or newer" ;;
    esac
    if [ "$(cat "$ROOT/opt/emo/qemu/VERSION" 2>/dev/null)" = "$version" ]; then
        rm -rf "$apt_dir"
        return 0
    fi
    (cd "$apt_dir" && apt-get "$@" -q download "qemu-user=$version" >>apt.log 2>&1) \
        || die "downloading qemu-user $version failed; see $apt_dir/apt.log"
    rm -rf "$apt_dir/x"
    dpkg-deb -x "$apt_dir"/qemu-user_*.deb "$apt_dir/x"
    "$apt_dir/x/usr/bin/qemu-aarch64" --version | grep -q 'version 1[0-9]\.' \
        || die "the unpacked qemu-aarch64 does not run or is not qemu 10+"
    mkdir -p "$ROOT/opt/emo/qemu"
    cp "$apt_dir/x/usr/bin/qemu-aarch64" "$ROOT/opt/emo/qemu/qemu-aarch64.tmp"
    mv "$ROOT/opt/emo/qemu/qemu-aarch64.tmp" "$ROOT/opt/emo/qemu/qemu-aarch64"
    echo "$version" >"$ROOT/opt/emo/qemu/VERSION"
    rm -rf "$apt_dir"
}

# the venv: wheels downloaded on the host for the guest's tags, installed by the guest's pip with no index. It is
# made in place (a venv records its path); the stamp is gone meanwhile, so an interrupted run redoes it.
make_venv() {
    pip="$1"
    shift
    mkdir -p "$WHEELS"
    platforms=""
    for minor in $GLIBC_MINORS; do platforms="$platforms --platform manylinux_2_${minor}_aarch64"; done
    # shellcheck disable=SC2086 # one word per option
    "$pip" download --disable-pip-version-check -q --only-binary=:all: --implementation cp --python-version "$PY_TAG" \
        --abi "cp$PY_TAG" --abi abi3 --abi none $platforms --platform manylinux2014_aarch64 --platform any \
        -d "$WHEELS" "$@" >"$CACHE/arm64-pip.log" 2>&1 \
        || die "downloading the aarch64 wheels failed; see $CACHE/arm64-pip.log"
    rm -rf "$ROOT/opt/emo/venv" "$ROOT/opt/emo/wheels"
    cp -r "$WHEELS" "$ROOT/opt/emo/wheels"
    unshare --mount --propagation private /bin/sh -c '
        set -e
        root="$1"; shift
        mount -t proc proc "$root/proc"
        exec chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp /bin/sh -c "
            set -e
            /usr/bin/python3 -m venv /opt/emo/venv
            /opt/emo/venv/bin/pip install --disable-pip-version-check -q --no-index --find-links /opt/emo/wheels \"\$@\"
        " sh "$@"
    ' sh "$ROOT" "$@" >>"$CACHE/arm64-pip.log" 2>&1 \
        || die "pip install inside the root failed; see $CACHE/arm64-pip.log"
    rm -rf "$ROOT/opt/emo/wheels"
}

# every runtime imports under qemu 10 on the oldest model we support, and the guest sees an Arm cpuinfo (the guest
# python is qemu's own program, not an exec through binfmt_misc: that would be the system's qemu)
smoke_test() {
    unshare --mount --propagation private /bin/sh -c '
        set -e
        mount -t proc proc "$1/proc"
        mount -t sysfs -o ro sysfs "$1/sys"
        exec env -i PATH=/usr/bin:/bin HOME=/tmp "$(command -v chroot)" "$1" \
            /opt/emo/qemu/qemu-aarch64 -cpu cortex-a53 \
            /opt/emo/venv/bin/python -c "
import numpy, onnxruntime, ai_edge_litert.interpreter
features = [l for l in open(\"/proc/cpuinfo\") if l.startswith(\"Features\")]
assert features and \"asimd\" in features[0], features
print(\"numpy\", numpy.__version__, \"onnxruntime\", onnxruntime.__version__, features[0].strip())
"' sh "$ROOT" >"$CACHE/arm64-smoke.log" 2>&1 \
        || die "the runtimes do not import inside the root under qemu 10; see $CACHE/arm64-smoke.log"
}

setup() {
    [ $# -ge 2 ] || die "usage: $0 setup PIP PIN..."
    pip="$1"
    shift
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount); run 'sudo make arm-root' once"
    [ -x "$pip" ] || die "no pip at $pip; run 'make venv' first"
    for tool in debootstrap dpkg-deb unshare apt-get; do
        command -v "$tool" >/dev/null || die "$tool is missing; install it (make sysdeps)"
    done
    mkdir -p "$CACHE"
    exec 9>"$CACHE/arm64-root.lock"
    flock 9  # one setup at a time on this machine (two clones running make test together)
    if check "$@"; then
        return 0
    fi
    start=$(date +%s)
    rm -f "$STAMP"  # not usable while it changes
    enable_binfmt
    [ -f "$BASE_MARK" ] || make_base
    fetch_qemu
    make_venv "$pip" "$@"
    smoke_test
    stamp_text "$@" >"$STAMP.tmp"
    mv "$STAMP.tmp" "$STAMP"
    say "ready in $(( $(date +%s) - start )) s: $ROOT ($(du -sh "$ROOT" | cut -f1)); $(grep '^qemu' "$STAMP")"
}

case "${1:-}" in
    setup) shift; setup "$@" ;;
    check) shift; check "$@" ;;
    *) die "usage: $0 setup PIP PIN... | check PIN..." ;;
esac
