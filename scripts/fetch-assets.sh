#!/usr/bin/env bash
# Fetches the guest assets the tests and the demo use, from Debian's packages, into
# assets/cache (gitignored). Idempotent: what is already there is kept.
#
#   assets/cache/vmlinuz   Debian's cloud kernel (a stock bzImage)
#
# Needs apt-get and dpkg-deb (any Debian or Ubuntu host).
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

fetch_kernel
