#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): host packages, guest assets, format,
# lints, a short run of every fuzz target, then every unit, KVM micro-guest and
# end-to-end test. Needs root: the /dev/kvm tests, and the namespace and setpriv tests
# of /dev/kvm errors.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-host.sh
scripts/fetch-assets.sh
cargo fmt --all -- --check
(cd guests/pvh-test && cargo fmt -- --check)
(cd fuzz && cargo fmt -- --check)
cargo clippy --workspace --all-targets --quiet -- -D warnings
scripts/fuzz.sh 10

# cargo prints one summary per test binary; close with the total. --no-fail-fast: one
# failing binary does not hide what the others would say (a host-specific failure
# once hid every test after it).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# A watchdog: a test that hangs fails the run well inside CI's budget, instead of
# running it out with nothing said.
timeout --kill-after=60 2400 cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ]; then
    echo "tests: stopped after 40 minutes; the test still running above hangs" >&2
fi
set -e
awk '/^test result:/ {p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f}' "$log"
exit "$status"
