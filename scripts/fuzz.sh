#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 10): a smoke run in the test
# suite, or a long run by hand (scripts/fuzz.sh 3600). Installs cargo-fuzz if missing.
# Uses stable Rust, so without a sanitizer: panics, aborts and hangs are what it finds.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}

command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz

# Seeds: real kernels to mutate from (the test guests, also as ELF32, a bzImage's
# first 64 KiB).
seeds=fuzz/corpus/kernel_image
mkdir -p "$seeds"
for guest in target/guests/release/pvh-test target/guests-linux64/release/pvh-test; do
    [ -f "$guest" ] && cp "$guest" "$seeds/$(echo "$guest" | tr / _)"
done
[ -f target/guests/release/pvh-test ] &&
    objcopy -O elf32-i386 target/guests/release/pvh-test "$seeds/pvh-test-elf32"
[ -f assets/cache/vmlinuz ] && head -c 65536 assets/cache/vmlinuz > "$seeds/bzimage-head"
# A VM definition with every field.
mkdir -p fuzz/corpus/vm_definition
cp docs/examples/web.toml fuzz/corpus/vm_definition/web.toml

cd fuzz
cargo fuzz build --sanitizer none -O
for target in $(cargo fuzz list); do
    echo "fuzz: $target for ${seconds}s"
    cargo fuzz run --sanitizer none -O "$target" -- -max_total_time="$seconds" \
        -print_final_stats=1 2>&1 | grep -E "^Done|stat::number_of_executed_units|ERROR|panicked" || true
    # cargo fuzz exits non-zero on a crash; re-check that no artifact was written.
    if ls "artifacts/$target"/crash-* "artifacts/$target"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $target found a failing input in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
