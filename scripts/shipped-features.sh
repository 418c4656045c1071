#!/usr/bin/env bash
# Checks, without building, that the shipped `aidledger` (the CLI package
# built on its own, with no features) turns on none of the workspace's
# test features: execution's `testkit`, audit's `synth`, node's
# `test-knobs` and testnet's `suite` (seed-keyed kits, test knobs and the
# benchmark suite). The workspace's test build turns them on through
# dev-dependencies, so a second build would be needed to look at the
# binary itself; that build shares almost nothing with the test build and
# takes longer than the tests (ADR 024). scripts/check-shipped.sh builds
# it and checks the binary, before a release.
#
# Fails if the shipped build turns on a workspace feature outside the list
# below (review it, then add it here), or if a test feature named here no
# longer exists in the test build (so that a rename cannot make this check
# pass by looking for a name nobody uses).
set -euo pipefail
cd "$(dirname "$0")/.."

shipped_allowed='aidledger-audit feature "default"
aidledger-audit feature "openapi"
aidledger-consensus feature "default"
aidledger-contracts feature "default"
aidledger-contracts feature "openapi"
aidledger-crypto feature "default"
aidledger-execution feature "default"
aidledger-mempool feature "default"
aidledger-network feature "default"
aidledger-node feature "default"
aidledger-node-core feature "default"
aidledger-storage feature "default"
aidledger-testnet feature "default"
aidledger-types feature "default"
aidledger-types feature "openapi"'

test_only='aidledger-audit feature "synth"
aidledger-execution feature "testkit"
aidledger-node feature "test-knobs"
aidledger-testnet feature "suite"'

features() {
  cargo tree --locked --prefix none "$@" |
    grep -oE '^aidledger-[a-z-]+ feature "[^"]+"' | sort -u
}

shipped=$(features -p aidledger-cli -e features,normal,build)
tested=$(features --workspace -e features,normal,build,dev)

extra=$(comm -23 <(echo "$shipped") <(echo "$shipped_allowed" | sort -u))
if [ -n "$extra" ]; then
  echo "the shipped aidledger turns on workspace features not reviewed for shipping:" >&2
  echo "$extra" >&2
  exit 1
fi
leaked=$(comm -12 <(echo "$shipped") <(echo "$test_only" | sort -u))
if [ -n "$leaked" ]; then
  echo "the shipped aidledger turns on test features:" >&2
  echo "$leaked" >&2
  exit 1
fi
missing=$(comm -13 <(echo "$tested") <(echo "$test_only" | sort -u))
if [ -n "$missing" ]; then
  echo "these test features are not in the test build (renamed?); update this script:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "the shipped aidledger turns on $(echo "$shipped" | wc -l) reviewed workspace features and none of the $(echo "$test_only" | wc -l) test features"
