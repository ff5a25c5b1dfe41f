#!/usr/bin/env bash
# Installs dependencies, builds tokenwatch and runs the demo: a generator
# keeps appending to two auth logs under /tmp/tokenwatch-demo (and rotates
# one of them now and then) while tokenwatch follows them with
# rules/demo.json and serves http://127.0.0.1:9477/metrics. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"

mkdir -p /tmp/tokenwatch-demo
python3 testdata/gen_demo_log.py --dir /tmp/tokenwatch-demo &
gen=$!
trap 'kill "$gen" 2>/dev/null || true' EXIT

cat <<MSG
tokenwatch demo: following /tmp/tokenwatch-demo/{gateway.log,vault-audit.log}
  metrics:  curl -s http://127.0.0.1:9477/metrics | grep -E '^(auth_token|tokenwatch_)'
  events:   tail -f /tmp/tokenwatch-demo/state/events.jsonl   (a spraying burst every minute)
  stop:     Ctrl-C (state is kept in /tmp/tokenwatch-demo/state; a rerun resumes)
MSG
build/tokenwatch run -c rules/demo.json
