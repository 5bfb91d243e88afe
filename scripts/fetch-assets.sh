#!/usr/bin/env bash
# Fetches the guest assets the tests and the demo use, from Debian's packages, into
# assets/cache (gitignored). Idempotent: what is already there is kept.
#
#   assets/cache/vmlinuz     Debian's cloud kernel (a stock bzImage)
#   assets/cache/initrd.img  a busybox initramfs: guests/initramfs/init and Debian's
#                            static busybox (busybox-static), gzip-compressed newc cpio
#   assets/cache/initrd-virtio.img  the same, with the kernel package's virtio modules
#                            (PCI transport, block, net, console, rng, vsock), which its
#                            init loads in order
#   assets/cache/debian.cpio a Debian 12 userland with systemd as its init, built by
#                            mmdebstrap from Debian's packages (no kernel, modules or
#                            docs), an uncompressed newc cpio to boot as an initramfs:
#                            root's password is "gasang", user "user" has "user"
#   assets/cache/debian-disk.img  a Debian 12 system on a raw 2 GiB ext4 disk (sparse):
#                            systemd, udev, networkd with DHCP, fio, iperf3; booted
#                            with debian-disk.vmlinuz and debian-disk.initrd, its own
#                            kernel and initramfs-tools initrd, and root=/dev/vda
#
# Needs apt-get and dpkg-deb (any Debian or Ubuntu host), /bin/busybox and mmdebstrap
# (scripts/setup-host.sh installs them).
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

# The kernel's virtio modules, in load order (each after what it depends on).
VIRTIO_MODULES="drivers/virtio/virtio_ring drivers/virtio/virtio
    drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev
    drivers/virtio/virtio_pci drivers/block/virtio_blk drivers/char/hw_random/virtio-rng
    net/core/failover drivers/net/net_failover drivers/net/virtio_net
    drivers/char/virtio_console net/vmw_vsock/vsock
    net/vmw_vsock/vmw_vsock_virtio_transport_common net/vmw_vsock/vmw_vsock_virtio_transport"

fetch_modules() {
    local dir="$cache/modules" work m
    [ -s "$dir/load" ] && return 0
    work=$(mktemp -d)
    chmod 755 "$work"
    trap 'rm -rf "$work"' RETURN
    (cd "$work" && chmod 777 . && apt-get download -q "$(cat "$cache/vmlinuz.package")" >/dev/null)
    dpkg-deb -x "$work"/*.deb "$work/root"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    for m in $VIRTIO_MODULES; do
        cp "$work"/root/lib/modules/*/kernel/"$m".ko "$dir.tmp/"
        basename "$m" >> "$dir.tmp/load"
    done
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    echo "fetch-assets: virtio modules -> assets/cache/modules"
}

# A busybox initramfs at $1, with the virtio modules if $2 is "virtio".
build_initramfs() {
    local init="$root/guests/initramfs/init" out="$1" work
    local dhcp="$root/guests/initramfs/udhcpc.script"
    # Rebuilt when the init script, the DHCP hook or busybox is newer than the image.
    if [ -s "$out" ] && [ "$out" -nt "$init" ] && [ "$out" -nt "$dhcp" ] \
        && [ "$out" -nt /bin/busybox ] \
        && { [ "$2" != virtio ] || [ "$out" -nt "$cache/modules/load" ]; }; then
        return 0
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    mkdir -p "$work"/{bin,dev,proc,sys,tmp}
    cp /bin/busybox "$work/bin/busybox"
    cp "$init" "$work/init"
    mkdir -p "$work/etc/udhcpc"
    cp "$dhcp" "$work/etc/udhcpc/default.script"
    chmod 755 "$work/init" "$work/bin/busybox" "$work/etc/udhcpc/default.script"
    if [ "$2" = virtio ]; then
        mkdir -p "$work/lib"
        cp -r "$cache/modules" "$work/lib/modules"
    fi
    (cd "$work" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null) \
        | gzip -9 > "$out.tmp"
    mv "$out.tmp" "$out"
    echo "fetch-assets: busybox initramfs -> ${out#"$root"/}"
}

build_debian() {
    local out="$cache/debian.cpio" recipe work
    # The recipe is this function itself: any change to how the image is built (the
    # packages, what is left out, the hooks) rebuilds it.
    recipe=$(declare -f build_debian | sha256sum | cut -d' ' -f1)
    if [ -s "$out" ] && [ "$(cat "$out.recipe" 2>/dev/null)" = "$recipe" ]; then
        return 0
    fi
    for tool in mmdebstrap cpio; do
        command -v "$tool" >/dev/null || {
            echo "fetch-assets: $tool not found: run scripts/setup-host.sh (or apt-get install $tool)" >&2
            exit 1
        }
    done
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    # Docs, manuals, translations and udev's hardware database are left out, and so
    # is the usrmerge tool (with the full perl it needs; perl-base stays): the image
    # is read into guest RAM at every boot.
    mmdebstrap --quiet --variant=minbase --include=systemd-sysv,udev,python3-minimal,usr-is-merged \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/lib/udev/hwdb.d/*' \
        --customize-hook='echo root:gasang | chroot "$1" chpasswd' \
        --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash user' \
        --customize-hook='echo user:user | chroot "$1" chpasswd' \
        --customize-hook='echo gasang > "$1/etc/hostname"' \
        --customize-hook='chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq usrmerge perl libperl5.36 perl-modules-5.36 libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl >/dev/null' \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/etc/udev/hwdb.bin "$1"/usr/lib/udev/hwdb.bin' \
        bookworm "$work/root"
    (cd "$work/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc) > "$out.tmp"
    mv "$out.tmp" "$out"
    echo "$recipe" > "$out.recipe"
    echo "fetch-assets: Debian userland (mmdebstrap) -> assets/cache/debian.cpio"
}

# A Debian 12 system disk: a raw ext4 image (no partition table: root=/dev/vda) made
# without loop mounts (mkfs.ext4 -d), with Debian's cloud kernel and its own
# initramfs (initramfs-tools), systemd, udev, iproute2, systemd-networkd doing DHCP
# on every wired interface, and fio, iperf3 and ping for the benchmarks. Its kernel and
# initrd are copied out of its /boot. root's password is gasang.
build_debian_disk() {
    local out="$cache/debian-disk.img" recipe work
    recipe=$(declare -f build_debian_disk | sha256sum | cut -d' ' -f1)
    if [ -s "$out" ] && [ "$(cat "$out.recipe" 2>/dev/null)" = "$recipe" ]; then
        return 0
    fi
    command -v mkfs.ext4 >/dev/null || {
        echo "fetch-assets: mkfs.ext4 not found: run scripts/setup-host.sh" >&2
        exit 1
    }
    echo "fetch-assets: building the Debian 12 system disk from Debian's packages (a few minutes, once)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    mmdebstrap --quiet --variant=minbase \
        --include=systemd-sysv,udev,iproute2,linux-image-cloud-amd64,initramfs-tools,e2fsprogs,fio,iperf3,iputils-ping,usr-is-merged \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='echo root:gasang | chroot "$1" chpasswd' \
        --customize-hook='echo gasang > "$1/etc/hostname"' \
        --customize-hook='echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$1/etc/fstab"' \
        --customize-hook='printf "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/20-wired.network"' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd >/dev/null 2>&1' \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
        bookworm "$work/root"
    cp "$work"/root/boot/vmlinuz-* "$cache/debian-disk.vmlinuz"
    cp "$work"/root/boot/initrd.img-* "$cache/debian-disk.initrd"
    mkfs.ext4 -q -F -L gasang-root -d "$work/root" "$out.tmp" 2G
    mv "$out.tmp" "$out"
    echo "$recipe" > "$out.recipe"
    echo "fetch-assets: Debian 12 system disk -> assets/cache/debian-disk.img (kernel and initrd beside it)"
}

fetch_kernel
fetch_modules
build_initramfs "$cache/initrd.img" plain
build_initramfs "$cache/initrd-virtio.img" virtio
build_debian
build_debian_disk
