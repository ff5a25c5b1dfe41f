#!/usr/bin/env bash
# bench/stress/memcap.sh — memory cap under 5,000,000 distinct tokens with
# max_tokens 1,000,000 (issue 7 point 6): builds a Release tokenwatch, then
# runs memcap.py, which feeds a real daemon chunk by chunk, samples its RSS
# and prints a Markdown summary (bench/README.md, "Memory cap").
#
#   bench/stress/memcap.sh [memcap.py options]   e.g. --tokens 2000000 --chunks 4
#
# Environment: STRESS_BUILD (default <repo>/build-stress), TW_BIN (skip the
# build), STRESS_OUT (also write the summary there). Exits 1 if a target is
# missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${STRESS_BUILD:-$ROOT/build-stress}
if [ -z "${TW_BIN:-}" ]; then
    echo "building Release into $BUILD ..." >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target tokenwatch >/dev/null
    TW_BIN=$BUILD/tokenwatch
fi
if [ -n "${STRESS_OUT:-}" ]; then
    python3 "$ROOT/bench/stress/memcap.py" --bin "$TW_BIN" "$@" | tee "$STRESS_OUT"
    exit "${PIPESTATUS[0]}"
fi
exec python3 "$ROOT/bench/stress/memcap.py" --bin "$TW_BIN" "$@"
