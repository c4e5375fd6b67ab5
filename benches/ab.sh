#!/usr/bin/env bash
# Interleaved A/B of two builds of the `load` bench: 64 calls in flight on
# one TCP connection, `ours` only, runs of A and B alternating so that the
# machine's drift (other builds, frequency) falls on both alike.
#
#   benches/ab.sh BIN_A BIN_B [PAIRS] [FLAVOR]
#
# BIN_A, BIN_B: `load` bench executables (build one with
#   `cargo bench -p remote-benches --bench load --no-run` and copy it away
#   before building the other; or build the other commit in a worktree with
#   its own CARGO_TARGET_DIR).
# PAIRS: runs of each (default 4); FLAVOR: `current-thread` (default) or
#   `multi-thread (2 workers)`.
#
# Prints each run's calls/s, then each build's median and range and B's
# median over A's. Single 1 s runs move by a few percent: trust a change
# only beyond both ranges' overlap.
set -euo pipefail
a=${1:?usage: benches/ab.sh BIN_A BIN_B [PAIRS] [FLAVOR]}
b=${2:?usage: benches/ab.sh BIN_A BIN_B [PAIRS] [FLAVOR]}
pairs=${3:-4}
flavor=${4:-current-thread}

run() {
    LOAD_SYSTEMS=ours LOAD_FLAVOR="$flavor" "$1" inflight 1.0 |
        awk -F'|' '/^\| ours/ { gsub(/ /, "", $4); print $4 }'
}

ra=() rb=()
for ((i = 1; i <= pairs; i++)); do
    x=$(run "$a"); y=$(run "$b")
    [ -n "$x" ] && [ -n "$y" ] || { echo "a run printed no figure" >&2; exit 1; }
    ra+=("$x"); rb+=("$y")
    printf 'pair %d: A %s  B %s calls/s\n' "$i" "$x" "$y"
done

# median min max of the arguments
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.0f %.0f %.0f\n", m, v[1], v[NR] }'; }
read -r ma loa hia < <(stats "${ra[@]}")
read -r mb lob hib < <(stats "${rb[@]}")
echo
echo "| build | median calls/s | range |"
echo "|---|---:|---|"
echo "| A $(basename "$a") | $ma | $loa–$hia |"
echo "| B $(basename "$b") | $mb | $lob–$hib |"
awk -v a="$ma" -v b="$mb" 'BEGIN { printf "\nB / A (medians): %.3f (%s, %s)\n", b / a, "'"$flavor"'", "'"$pairs"' pairs" }'
