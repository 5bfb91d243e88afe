#!/usr/bin/env bash
# Boots the demo guest: builds gasang and its PVH test guest from source, then runs it
# with 2 vCPUs. The guest prints what the machine told it and powers off.
#   scripts/demo.sh [extra gasang run arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-host.sh
cargo build --release --quiet -p gasang-cli
(cd guests/pvh-test && CARGO_TARGET_DIR=../../target/guests cargo build --release --quiet)
exec target/release/gasang run --kernel target/guests/release/pvh-test \
    --memory 256M --vcpus 2 --cmdline "hello from the gasang demo" "$@"
