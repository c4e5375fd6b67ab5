#!/usr/bin/env bash
# What `#[remote]` costs a user's build, against tarpc (see measure.py).
#   benches/compile-time/measure.sh [--runs N] [--only timings|static]
set -euo pipefail
exec python3 "$(dirname "$0")/measure.py" "$@"
