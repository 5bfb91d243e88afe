#!/usr/bin/env bash
# Fetches the guest assets the tests and the demo use, from Debian's packages, into
# assets/cache (gitignored). Idempotent: what is already there is kept.
#
#   assets/cache/vmlinuz     Debian's cloud kernel (a stock bzImage)
#   assets/cache/initrd.img  a busybox initramfs: guests/initramfs/init and Debian's
#                            static busybox (busybox-static), gzip-compressed newc cpio
#
# Needs apt-get and dpkg-deb (any Debian or Ubuntu host), and /bin/busybox
# (scripts/setup-host.sh installs it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/assets/cache"
mkdir -p "$cache"

fetch_kernel() {
    [ -s "$cache/vmlinuz" ] && return 0
    local pkg work
    # The meta-package names the current kernel package.
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [ -z "$pkg" ]; then
        echo "fetch-assets: apt does not know linux-image-cloud-amd64; run 'apt-get update' (Debian) first" >&2
        exit 1
    fi
    work=$(mktemp -d)
    chmod 755 "$work" # apt downloads as the unprivileged _apt user
    trap 'rm -rf "$work"' RETURN
    (cd "$work" && chmod 777 . && apt-get download -q "$pkg" >/dev/null)
    dpkg-deb -x "$work"/*.deb "$work/root"
    cp "$work"/root/boot/vmlinuz-* "$cache/vmlinuz.tmp"
    mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
    echo "$pkg" > "$cache/vmlinuz.package"
    echo "fetch-assets: $pkg -> assets/cache/vmlinuz"
}

build_initramfs() {
    local init="$root/guests/initramfs/init" out="$cache/initrd.img" work
    # Rebuilt when the init script or busybox is newer than the image.
    if [ -s "$out" ] && [ "$out" -nt "$init" ] && [ "$out" -nt /bin/busybox ]; then
        return 0
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    mkdir -p "$work"/{bin,dev,proc,sys,tmp}
    cp /bin/busybox "$work/bin/busybox"
    cp "$init" "$work/init"
    chmod 755 "$work/init" "$work/bin/busybox"
    (cd "$work" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null) \
        | gzip -9 > "$out.tmp"
    mv "$out.tmp" "$out"
    echo "fetch-assets: busybox initramfs -> assets/cache/initrd.img"
}

fetch_kernel
build_initramfs
