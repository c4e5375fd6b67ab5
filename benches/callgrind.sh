#!/usr/bin/env bash
# Instructions and heap allocations per call, for every system and case, in
# one table, so a figure can be tracked from change to change.
#
#   benches/callgrind.sh [SYSTEM...]     (default: every system; `counts
#                                         callgrind` with no system lists them)
#
# For each system the `counts` bench binary (release profile, as
# `cargo bench` builds it) runs twice under `valgrind --tool=callgrind`, with
# CALLS_LO and CALLS_HI calls after the same set-up and 128 warm-up calls;
# instructions per call = (Ir_hi - Ir_lo) / (CALLS_HI - CALLS_LO), so set-up,
# warm-up and exit cancel out. Allocations per call are counted by the
# binary's counting allocator over the CALLS_HI timed calls (both ends). A
# name ending in -64 keeps 64 calls in flight on the one connection.
#
# Prints a markdown table and writes it, tab-separated, to $OUT/summary.tsv
# (with the commit it measured). The profiles stay in $OUT
# (callgrind_annotate them).
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS_LO=${CALLS_LO:-1000}
CALLS_HI=${CALLS_HI:-5000}
OUT=${OUT:-target/callgrind}
mkdir -p "$OUT"

bin=$(cargo bench -p remote-benches --bench counts --no-run 2>&1 |
    sed -n 's/.*Executable benches\/counts.rs (\(.*\))/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the counts bench" >&2; exit 1; }

systems=("$@")
if [ ${#systems[@]} -eq 0 ]; then
    systems=(raw raw-64 ours ours-64 ours-callback ours-cap ours-pipe ours-echo-1k ours-sum-4k
        tarpc-bincode tarpc-bincode-64 tarpc tarpc-channel
        capnp capnp-64 capnp-callback capnp-cap capnp-pipe
        remoc remoc-callback remoc-cap)
fi

# run SYSTEM CALLS -> "Ir allocs/call reallocs/call"
run() {
    local f="$OUT/callgrind.$1.$2.out" out err
    err=$(mktemp)
    out=$(valgrind --tool=callgrind --callgrind-out-file="$f" "$bin" callgrind "$1" "$2" 2>"$err")
    local ir
    ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$err")
    rm -f "$err"
    [ -n "$ir" ] || { echo "callgrind failed for $1" >&2; exit 1; }
    echo "$ir $(sed -n 's/^allocs\/call \([0-9.]*\) reallocs\/call \([0-9.]*\)$/\1 \2/p' <<<"$out")"
}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
printf 'system\tinstructions/call\tallocs/call\treallocs/call\tcommit\n' >"$OUT/summary.tsv"
printf '| system | instructions/call | allocs/call | reallocs/call |\n|---|---:|---:|---:|\n'
for s in "${systems[@]}"; do
    read -r lo _ _ < <(run "$s" "$CALLS_LO")
    read -r hi allocs reallocs < <(run "$s" "$CALLS_HI")
    per=$(( (hi - lo) / (CALLS_HI - CALLS_LO) ))
    printf '| %s | %d | %s | %s |\n' "$s" "$per" "$allocs" "$reallocs"
    printf '%s\t%d\t%s\t%s\t%s\n' "$s" "$per" "$allocs" "$reallocs" "$commit" >>"$OUT/summary.tsv"
done
echo
echo "commit $commit; table also in $OUT/summary.tsv"
echo "profiles: $OUT/callgrind.SYSTEM.$CALLS_HI.out (callgrind_annotate --inclusive=yes FILE)"
