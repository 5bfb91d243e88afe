#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages gasang's tests and demo need, if missing.
# Rust itself (>= 1.85, with cargo) must already be installed (rustup).
set -euo pipefail

need=()
command -v iasl >/dev/null || need+=(acpica-tools)       # ACPI table checks
command -v objdump >/dev/null || need+=(binutils)        # guest code checks
command -v cc >/dev/null || need+=(gcc)                  # links the test guest
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev) # static user-run programs
[ -x /bin/busybox ] || need+=(busybox-static)            # user-run applet tests
command -v unshare >/dev/null || need+=(util-linux)      # /dev/kvm-missing test
command -v setpriv >/dev/null || need+=(util-linux)      # /dev/kvm-not-permitted test
command -v dpkg-deb >/dev/null || need+=(dpkg)           # guest assets
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)   # the Debian userland image
command -v cpio >/dev/null || need+=(cpio)               # packs it
command -v passt >/dev/null || need+=(passt)             # --net user
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)     # the Debian system disk, debugfs
command -v ip >/dev/null || need+=(iproute2)             # the network tests' namespaces
command -v cargo >/dev/null || {
    echo "setup-host: cargo not found: install Rust 1.85 or newer (https://rustup.rs)" >&2
    exit 1
}
if [ ! -e /dev/kvm ]; then
    echo "setup-host: warning: /dev/kvm is missing: the KVM tests will fail" >&2
fi
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "setup-host: installing ${need[*]}"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >/dev/null
fi
# apt-get download needs package lists.
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q >/dev/null
fi
