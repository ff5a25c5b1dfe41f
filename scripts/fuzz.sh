#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan+UBSan) and runs
# each one for a fixed time, JOBS targets at a time. Exits 1 if any target
# found a crash, leak, timeout, out-of-memory or sanitizer report: the input
# is saved under BUILD/fuzz-artifacts/TARGET/ and printed in the output as
# gzip+base64, so that a CI log is enough to recover it (minimise it and add
# it to tests/fuzz/regressions/TARGET/, see tests/fuzz/README.md).
#
#   scripts/fuzz.sh [-t SECONDS] [-j JOBS] [-b BUILD_DIR] [-s SOURCE_DIR] [TARGET...]
#
#   -t  seconds per target (default: $FUZZ_SECONDS or 60)
#   -j  targets run at the same time, one core each (default 1; CI: nproc)
#   -b  build directory (default: build-fuzz)
#   -s  source tree to configure (default: this checkout)
#   TARGET  parse_generic_text parse_generic_json parse_vault_audit timeparse
#           format_file config rules tz state linebuf baselines api_request
#           api_auth cases (default: all)
#   FUZZ_FLAGS  extra libFuzzer flags, e.g. "-fork=1 -ignore_crashes=1" to go
#           on past a known crash (each crash is still saved and reported)
#
# Each target starts from its committed corpus (tests/fuzz/corpus/TARGET and
# regressions/TARGET) and its dictionary (tests/fuzz/dict/TARGET.dict, if
# any); new inputs go to BUILD/fuzz-corpus/TARGET, which is kept between
# runs and never written back to the source tree. Wall time is about
# ceil(targets / JOBS) x SECONDS plus the build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

seconds=${FUZZ_SECONDS:-60}
parallel=1
build=build-fuzz
src=$repo
while getopts "t:j:b:s:h" opt; do
    case $opt in
    t) seconds=$OPTARG ;;
    j) parallel=$OPTARG ;;
    b) build=$OPTARG ;;
    s) src=$OPTARG ;;
    *) sed -n '2,26p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
case $seconds in '' | *[!0-9]*) echo "fuzz.sh: -t expects whole seconds" >&2; exit 2 ;; esac
case $parallel in '' | 0 | *[!0-9]*) echo "fuzz.sh: -j expects a number >= 1" >&2; exit 2 ;; esac
[ "$seconds" -gt 0 ] || { echo "fuzz.sh: -t expects at least 1 second" >&2; exit 2; }

all_targets=(parse_generic_text parse_generic_json parse_vault_audit timeparse
             format_file config rules tz state linebuf baselines api_request
             api_auth cases)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [ -f "$repo/tests/fuzz/fuzz_$t.c" ] || { echo "fuzz.sh: no target $t" >&2; exit 2; }
done

# Longest input per target: log lines up to the daemon's default max_line
# (64 KiB) plus room; config, state and credential files and HTTP requests
# are small by nature (an action body is at most 8 KiB: 12 KiB leaves room
# for the 413 case).
max_len() {
    case $1 in
    timeparse) echo 256 ;;
    config | rules) echo 16384 ;;
    tz) echo 8192 ;;
    state | baselines | cases) echo 65536 ;;
    api_request) echo 12288 ;;
    api_auth) echo 4096 ;;
    *) echo 70000 ;;
    esac
}

cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1 ||
   ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing clang and libFuzzer (clang, libclang-rt-14-dev)"
        apt-get install -y --no-install-recommends clang libclang-rt-14-dev >/dev/null
    else
        echo "fuzz.sh: needs clang and libFuzzer: apt-get install clang libclang-rt-14-dev" >&2
        exit 2
    fi
fi

cores=$(nproc 2>/dev/null || echo 2)
SECONDS=0
echo "== build ($build, clang, -fsanitize=fuzzer,address,undefined)"
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DTW_FUZZ=ON -DBUILD_TESTING=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$cores" --target "${targets[@]/#/fuzz_}"

export TW_SOURCE_DIR=$repo
# Leaks count as findings; a UBSan report aborts (the build also sets
# -fno-sanitize-recover=all).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

results=$build/fuzz-logs/results
rm -rf "$results"
mkdir -p "$results"

# Runs one target; writes its summary line to $results/TARGET and, on a
# finding, the names of the new artifacts to $results/TARGET.new.
run_target() {
    local t=$1
    local bin=$build/tests/fuzz/fuzz_$t
    local work=$build/fuzz-corpus/$t
    local art=$build/fuzz-artifacts/$t
    local log=$build/fuzz-logs/$t.log
    mkdir -p "$work" "$art"
    local dirs=("$work" "$repo/tests/fuzz/corpus/$t")
    [ -d "$repo/tests/fuzz/regressions/$t" ] && dirs+=("$repo/tests/fuzz/regressions/$t")
    local dict=()
    [ -f "$repo/tests/fuzz/dict/$t.dict" ] && dict=(-dict="$repo/tests/fuzz/dict/$t.dict")
    ls -A "$art" | sort >"$results/$t.before"
    local rc=0
    # shellcheck disable=SC2086  # FUZZ_FLAGS is a list of flags
    "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art/" "${dict[@]}" ${FUZZ_FLAGS:-} "${dirs[@]}" \
        >"$log" 2>&1 </dev/null || rc=$?
    local execs speed cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    # -fork mode prints no final stats: take the last status line.
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    if [ -z "$speed" ] && [ -n "$execs" ]; then
        speed=$((execs / seconds))
    fi
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    local line
    line=$(printf '%-20s %10s execs %7s exec/s  %s' "$t" "${execs:-?}" "${speed:-?}" "$cov")
    # With -ignore_crashes the exit code stays 0: count new artifacts too.
    ls -A "$art" | sort | comm -13 "$results/$t.before" - >"$results/$t.new"
    if [ $rc -ne 0 ] || [ -s "$results/$t.new" ]; then
        line="$line  FINDING (exit $rc)"
    fi
    echo "$line" >"$results/$t"
    echo "   done: $line"
}

echo "== built in ${SECONDS}s; fuzzing ${#targets[@]} targets, ${seconds}s each," \
     "$parallel at a time (logs: $build/fuzz-logs/)"
SECONDS=0
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do
        wait -n || true
    done
    echo "== fuzz_$t for ${seconds}s"
    run_target "$t" &
done
wait

failed=()
summary=()
for t in "${targets[@]}"; do
    line=$(cat "$results/$t" 2>/dev/null || echo "$t: no result (the runner died)  FINDING")
    summary+=("$line")
    case $line in *FINDING*) failed+=("$t") ;; *) continue ;; esac
    log=$build/fuzz-logs/$t.log
    art=$build/fuzz-artifacts/$t
    echo "== finding in $t (log: $log)"
    # The report: sanitizer or invariant message and the first frames.
    grep -m1 -A40 -E '^==[0-9]+==(ERROR|WARNING)|fuzz invariant failed|runtime error|^==[0-9]+== ERROR: libFuzzer' \
        "$log" | head -60 || tail -40 "$log"
    while read -r name; do
        [ -n "$name" ] || continue
        f=$art/$name
        echo "---- artifact $f ($(wc -c <"$f") bytes); recover it with:"
        echo "     base64 -d <<'TW_FUZZ_B64' | gunzip > $name"
        gzip -9c "$f" | base64 -w 76
        echo "TW_FUZZ_B64"
    done <"$results/$t.new"
done

echo "== summary (${seconds}s per target, $parallel at a time, ${SECONDS}s in all)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: findings in: ${failed[*]}" >&2
    exit 1
fi
