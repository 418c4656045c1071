#!/usr/bin/env bash
# A bounded libFuzzer run of every fuzz target that builds without RocksDB
# (all but chain_file), SECONDS seconds each (default 10), for CI. Needs
# nightly Rust; installs cargo-fuzz if missing. New inputs go to a
# temporary directory: the committed corpus (fuzz/corpus) is only read.
# Longer runs by hand: fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "notice: no nightly Rust toolchain here, so no libFuzzer run;"
  echo "the test suite replayed the corpus and a seeded mutation run on stable"
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd fuzz
cargo +nightly fuzz build -s none --no-default-features
for t in $(cargo +nightly fuzz list); do
  [ "$t" = chain_file ] && continue
  mkdir -p "$tmp/$t"
  echo "--- $t: ${secs} s"
  set +e
  cargo +nightly fuzz run -s none --no-default-features "$t" "$tmp/$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$tmp/$t.log" 2>&1
  code=$?
  set -e
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$tmp/$t.log" || true
  if [ "$code" != 0 ]; then
    tail -40 "$tmp/$t.log" >&2
    echo "fuzz target $t failed (exit $code); the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
