#!/usr/bin/env bash
# Time and peak memory of `remote-policy check --timings` (release) on the
# dense schemas of benches/dense.rs (1,000 and 2,000 types).
# Usage: remote-policy/benches/dense.sh [path/to/remote-policy binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build -q --release -p remote-policy --bin remote-policy
  bin=target/release/remote-policy
fi
dir=$PWD/target/dense-schemas
mkdir -p "$dir"
for n in 1000 2000; do
  [ -f "$dir/dense-$n.json" ] ||
    cargo bench -q -p remote-policy --bench dense -- --write "$n" "$dir/dense-$n.json"
  echo "-- $n types"
  /usr/bin/time -f "max RSS %M KiB, wall %e s" "$bin" check --schema "$dir/dense-$n.json" \
    --policy "$dir/dense-$n.json.policy.toml" --timings --format json -o "$dir/report-$n.json" || true
  python3 -c "import json,sys; r=json.load(open('$dir/report-$n.json')); print(len(r['findings']), 'findings')"
done
