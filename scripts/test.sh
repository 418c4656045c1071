#!/usr/bin/env bash
# Runs the whole test suite: unit, property, simulation and end-to-end tests.
# Everything builds in the release profile only (docs/adr/005-release-only-builds.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh xmllint ip promtool openapi browser
# The browser is installed now: its test must not skip.
export AIDLEDGER_REQUIRE_BROWSER=1
exec cargo test --workspace --release --locked "$@"
