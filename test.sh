#!/usr/bin/env bash
# The whole test suite: unit tests, the golden-fixture ladders, and the plugin bundle.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --locked
cargo xtask bundle mrt-live --release
for f in "target/bundled/MRT Live.clap" "target/bundled/MRT Live.vst3"; do
  test -e "$f" || { echo "error: bundle $f was not produced" >&2; exit 1; }
done
echo "bundles: target/bundled/MRT Live.clap, target/bundled/MRT Live.vst3"
