#!/usr/bin/env bash
# Instructions per call, counted by callgrind, with set-up cancelled.
#
#   benches/callgrind.sh [SYSTEM...]     (default: every system)
#
# For each system the `counts` bench binary runs twice under
# `valgrind --tool=callgrind`, with CALLS_LO and CALLS_HI calls after the
# same set-up and warm-up; instructions per call = (Ir_hi - Ir_lo) /
# (CALLS_HI - CALLS_LO). The profiles stay in $OUT (callgrind_annotate them).
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
    systems=(raw ours ours-callback ours-cap ours-echo-1k tarpc tarpc-channel remoc remoc-callback remoc-cap)
fi

ir() { # system calls -> total instructions
    local f="$OUT/callgrind.$1.$2.out"
    valgrind --tool=callgrind --callgrind-out-file="$f" "$bin" callgrind "$1" "$2" \
        2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '| system | instructions/call |\n|---|---:|\n'
for s in "${systems[@]}"; do
    lo=$(ir "$s" "$CALLS_LO")
    hi=$(ir "$s" "$CALLS_HI")
    printf '| %s | %d |\n' "$s" $(( (hi - lo) / (CALLS_HI - CALLS_LO) ))
done
echo
echo "profiles: $OUT/callgrind.SYSTEM.$CALLS_HI.out (callgrind_annotate --inclusive=yes FILE)"
