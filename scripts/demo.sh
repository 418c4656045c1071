#!/usr/bin/env bash
# The main job: a local four-organisation consortium running a whole aid-fund
# lifecycle, ending with the auditor's replay.
# Usage: scripts/demo.sh [DIR] [extra flags for `aidledger testnet demo`]
# Stop the nodes afterwards with: ./target/release/aidledger testnet down --dir DIR
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh
dir="${1:-./testnet-local}"
shift || true
cargo build --release --locked -p aidledger-cli
exec ./target/release/aidledger testnet demo --dir "$dir" "$@"
