#!/usr/bin/env bash
# The whole test suite: unit tests, the golden-fixture ladders, the CLI, and the plugin bundle.
set -euo pipefail
cd "$(dirname "$0")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --workspace --locked 2>&1 | tee "$log"

# The bundles are built with the test profile (dependencies at opt-level 3, already compiled by
# the tests above): a release build of the engine would add ~17 minutes to CI on 2 cores.
# Release bundles for use: `cargo xtask bundle mrt-live --release` (README).
cargo xtask bundle mrt-live ${MRT_BUNDLE_ARGS:-}
bundled="${CARGO_TARGET_DIR:-target}/bundled"
for f in "$bundled/MRT Live.clap" "$bundled/MRT Live.vst3"; do
  test -e "$f" || { echo "error: bundle $f was not produced" >&2; exit 1; }
done
echo "bundles: $bundled/MRT Live.clap, $bundled/MRT Live.vst3"

# One closing line for the whole run (cargo's own last line is a crate's empty doc-test run).
grep -E '^test result:' "$log" | awk '
  { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  END { printf "tests: %d passed, %d failed\n", p, f }'
