#!/usr/bin/env bash
# The main job: a local four-organisation consortium running a whole aid-fund
# lifecycle. Usage: scripts/demo.sh [DIR] [extra flags for `testnet demo`]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh
dir="${1:-./testnet-local}"
shift || true
cargo build --release --locked -p aidledger-node
if ! ./target/release/aidledger testnet demo --help >/dev/null 2>&1; then
  echo "aidledger testnet demo is not built yet (see the open node issues)." >&2
  exit 2
fi
exec ./target/release/aidledger testnet demo --dir "$dir" "$@"
