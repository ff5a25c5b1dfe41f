#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan+UBSan) and runs
# each one, one after the other, for a fixed time. Exits non-zero if any
# target found a crash, leak, timeout or sanitizer report; the input is
# saved under BUILD/fuzz-artifacts/TARGET/ (minimise it and add it to
# tests/fuzz/regressions/TARGET/, see tests/fuzz/README.md).
#
#   scripts/fuzz.sh [-t SECONDS] [-b BUILD_DIR] [-s SOURCE_DIR] [TARGET...]
#
#   -t  seconds per target (default: $FUZZ_SECONDS or 60)
#   -b  build directory (default: build-fuzz)
#   -s  source tree to configure (default: this checkout)
#   TARGET  parse_generic_text parse_generic_json parse_vault_audit timeparse
#           format_file config rules tz state linebuf (default: all)
#   FUZZ_FLAGS  extra libFuzzer flags, e.g. "-fork=1 -ignore_crashes=1" to go
#           on past a known crash (each crash is still saved and reported)
#
# Each target starts from its committed corpus (tests/fuzz/corpus/TARGET and
# regressions/TARGET); new inputs go to BUILD/fuzz-corpus/TARGET, which is
# kept between runs and never written back to the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

seconds=${FUZZ_SECONDS:-60}
build=build-fuzz
src=$repo
while getopts "t:b:s:h" opt; do
    case $opt in
    t) seconds=$OPTARG ;;
    b) build=$OPTARG ;;
    s) src=$OPTARG ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))

all_targets=(parse_generic_text parse_generic_json parse_vault_audit timeparse
             format_file config rules tz state linebuf)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

# Longest input per target: log lines up to the daemon's default max_line
# (64 KiB) plus room; config and state files are small by nature.
max_len() {
    case $1 in
    timeparse) echo 256 ;;
    config | rules) echo 16384 ;;
    tz) echo 8192 ;;
    state) echo 65536 ;;
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

jobs=$(nproc 2>/dev/null || echo 2)
echo "== build ($build, clang, -fsanitize=fuzzer,address,undefined)"
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DTW_FUZZ=ON -DBUILD_TESTING=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}"

export TW_SOURCE_DIR=$repo
# Leaks count as findings; a UBSan report aborts (the build also sets
# -fno-sanitize-recover=all).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz/fuzz_$t
    work=$build/fuzz-corpus/$t
    art=$build/fuzz-artifacts/$t
    log=$build/fuzz-logs/$t.log
    mkdir -p "$work" "$art" "$(dirname "$log")"
    dirs=("$work" "$repo/tests/fuzz/corpus/$t")
    [ -d "$repo/tests/fuzz/regressions/$t" ] && dirs+=("$repo/tests/fuzz/regressions/$t")
    echo "== fuzz_$t for ${seconds}s (log: $log)"
    before=$(ls "$art" | wc -l)
    rc=0
    "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art/" ${FUZZ_FLAGS:-} "${dirs[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    # -fork mode prints no final stats: take the last status line.
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    if [ -z "$speed" ] && [ -n "$execs" ]; then
        speed=$((execs / seconds))
    fi
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    line=$(printf '%-20s %10s execs %7s exec/s  %s' "$t" "${execs:-?}" "${speed:-?}" "$cov")
    # With -ignore_crashes the exit code stays 0: count new artifacts too.
    if [ $rc -ne 0 ] || [ "$(ls "$art" | wc -l)" -gt "$before" ]; then
        line="$line  FINDING (exit $rc)"
        failed+=("$t")
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz invariant failed|.*runtime error)' "$log" |
            head -5 || true
        ls -t "$art" | head -5 | sed "s|^|    artifact: $art/|" || true
    fi
    summary+=("$line")
done

echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: findings in: ${failed[*]}" >&2
    exit 1
fi
