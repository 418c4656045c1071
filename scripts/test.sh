#!/usr/bin/env bash
# Runs the whole test suite: unit, property, simulation and end-to-end tests.
# Everything builds in the release profile only (docs/adr/005-release-only-builds.md).
# Tests run under cargo-nextest, several at a time (.config/nextest.toml,
# docs/adr/024-ci-time.md); where nextest is missing, under cargo test.
# Extra arguments go to the runner (for example --no-fail-fast, or a test
# name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh xmllint ip promtool openapi browser
# The browser is installed now: its test must not skip.
export AIDLEDGER_REQUIRE_BROWSER=1
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --release --locked "$@"
fi
echo "notice: cargo-nextest is not installed, so the tests run one binary at a time"
echo "under cargo test (slower; 'cargo install cargo-nextest --locked' adds it)"
exec cargo test --workspace --release --locked "$@"
