#!/usr/bin/env bash
# bench/stress/load.sh — /metrics under ingestion load and idle connections
# (issue 7 point 5): builds a Release tokenwatch, then runs load.py, which
# drives a paced log generator, wrk and a slowloris client against a real
# daemon and prints a Markdown summary (bench/README.md, "HTTP under load").
#
#   bench/stress/load.sh [load.py options]      e.g. --rate 300000 --conns 2000
#
# Environment:
#   STRESS_BUILD  build directory (default <repo>/build-stress)
#   TW_BIN        use this binary instead of building one
#   STRESS_OUT    also write the summary to this file
# Needs: wrk (Debian package wrk), python3, cmake. Exits 1 if a target is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${STRESS_BUILD:-$ROOT/build-stress}
if ! command -v wrk >/dev/null; then
    echo "load.sh: wrk is not installed (apt-get install wrk)" >&2
    exit 2
fi
if [ -z "${TW_BIN:-}" ]; then
    echo "building Release into $BUILD ..." >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target tokenwatch >/dev/null
    TW_BIN=$BUILD/tokenwatch
fi
if [ -n "${STRESS_OUT:-}" ]; then
    python3 "$ROOT/bench/stress/load.py" --bin "$TW_BIN" "$@" | tee "$STRESS_OUT"
    exit "${PIPESTATUS[0]}"
fi
exec python3 "$ROOT/bench/stress/load.py" --bin "$TW_BIN" "$@"
