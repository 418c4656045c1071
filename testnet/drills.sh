#!/usr/bin/env bash
# Fault drills at full size on a fresh local consortium:
#   testnet/drills.sh [DIR] [extra flags for `aidledger testnet drill`]
# CI runs the same drill at a small size (crates/cli/tests/lifecycle.rs).
# Defaults here: 200 tx/s for 5 minutes, 10 kill -9 rounds, a SIGSTOP pause
# and a partition. Override with e.g. --rate 500 --duration 600 --kills 20.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh
dir="${1:-./testnet-drills}"
shift || true
cargo build --release --locked -p aidledger-cli
bin=./target/release/aidledger
if [ ! -f "$dir/testnet.json" ]; then
  "$bin" testnet init --dir "$dir"
fi
trap '"$bin" testnet down --dir "$dir" >/dev/null 2>&1 || true' EXIT
"$bin" testnet drill --dir "$dir" --rate 200 --duration 300 --kills 10 "$@"
