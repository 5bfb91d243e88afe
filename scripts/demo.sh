#!/usr/bin/env bash
# The demo: a Debian 12 system booted from its virtio disk, with user networking
# (passt) and the host's entropy, to a login prompt on this terminal.
#   scripts/demo.sh [extra gasang run arguments]
# The first run builds what it needs (gasang, Debian's kernel, the system disk from
# Debian's packages: a few minutes); later runs boot at once.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'demo: %s\n' "$*" >&2; }

say "checking the host's packages (installs what is missing)"
scripts/setup-host.sh
say "building gasang (cargo build --release)"
cargo build --release --quiet -p gasang-cli
say "fetching Debian's kernel and building the Debian 12 system disk (first run only)"
scripts/fetch-assets.sh
disk=assets/cache/demo-disk.img
if [ ! -s "$disk" ]; then
    # The demo's own copy: what you write in the guest stays in it between runs.
    cp --sparse=always assets/cache/debian-disk.img "$disk"
fi
say "booting Debian from $disk on virtio-blk, with --net user and --rng"
say "log in as root, password gasang; 'poweroff' ends it, or Ctrl-A X quits at once"
exec target/release/gasang run \
    --kernel assets/cache/debian-disk.vmlinuz --initrd assets/cache/debian-disk.initrd \
    --cmdline "console=ttyS0 root=/dev/vda rw" --memory 1G --vcpus 2 \
    --disk "$disk" --net user --rng "$@"
