#!/usr/bin/env bash
# Builds the shipped `aidledger` (the CLI package alone, no features) and
# checks the binary itself: no benchmark suite, no seed-keyed test kits,
# and the test knobs ignored. Run it before a release. It is a second full
# release build (the test build's dev-dependencies change the features of
# serde, syn, hyper and others, so almost nothing is shared with it), so CI
# runs the build-free check scripts/shipped-features.sh instead (ADR 024).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p aidledger-cli
shipped="${CARGO_TARGET_DIR:-target}/release/aidledger"

set +e
out=$("$shipped" bench suite --quick 2>&1); code=$?
set -e
if [ "$code" != 2 ] || ! grep -q "built without the benchmark suite" <<<"$out"; then
  echo "the shipped aidledger still has bench suite (exit $code): $out" >&2
  exit 1
fi
if grep -q "dev_genesis" "$shipped"; then
  echo "the shipped aidledger contains execution::testkit" >&2
  exit 1
fi

knob=$(mktemp -d)
trap 'rm -rf "$knob"' EXIT
"$shipped" genesis new --chain-id ci-knob --out "$knob/plain.json" >/dev/null
AIDLEDGER_TEST_MODULES=plans@3 AIDLEDGER_TEST_WIRE_MAX=1 \
  "$shipped" genesis new --chain-id ci-knob --out "$knob/knob.json" >/dev/null 2>&1
if ! diff <(grep -A1 '"name"' "$knob/plain.json") <(grep -A1 '"name"' "$knob/knob.json") >/dev/null; then
  echo "the shipped aidledger obeys AIDLEDGER_TEST_MODULES" >&2
  exit 1
fi
echo "the shipped aidledger has no benchmark suite, no test kits, and ignores the test knobs"
