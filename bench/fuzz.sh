#!/usr/bin/env bash
# Run every fuzz target for a while (default 1m each): bash bench/fuzz.sh [DURATION]
# CI runs their seed corpora (and any crash inputs kept in testdata/fuzz) as
# ordinary tests; this explores further. A crash leaves its input under the
# package's testdata/fuzz/<Target>/: keep it there as a regression case.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-1m}
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "== $pkg $target ($time)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"
  done
done
