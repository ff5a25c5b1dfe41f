#!/usr/bin/env bash
# Installs dependencies, builds tokenwatch twice (release-with-debug-info and
# ASan+UBSan) with -Werror, and runs the whole ctest suite on both builds;
# then the two-thread tests under ThreadSanitizer, then the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test

jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (RelWithDebInfo, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTW_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== build (ASan+UBSan, -Werror)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTW_SANITIZE=ON -DTW_WERROR=ON >/dev/null
cmake --build build-asan -j "$jobs"
echo "== tests under ASan+UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"

# The two-thread code (handoff queue, GeoIP lookups moving between the reader
# and the analysis thread, the daemon's reader/analysis split) under
# ThreadSanitizer: the unit tests that drive it and the daemon test with two
# threads, about a minute and a half on two cores. A reported race stops the
# process (halt_on_error), which fails the test.
echo "== build (ThreadSanitizer, -Werror: the tests of the two-thread code)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTW_WERROR=ON \
    "-DCMAKE_C_FLAGS=-fsanitize=thread -fno-omit-frame-pointer" >/dev/null
cmake --build build-tsan -j "$jobs" --target tokenwatch test_handoff test_detect_batch
echo "== two-thread tests under ThreadSanitizer"
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -j "$jobs" \
    -R 'unit\.test_(handoff|detect_batch)$|integration\.test_threads$'

# ---- BEGIN fuzzing in CI (see tests/fuzz/README.md) ----------------------------
# Every libFuzzer target of tests/fuzz for TW_FUZZ_SECONDS (default 60) under
# ASan+UBSan, as many at a time as there are cores: about 7 minutes for 14
# targets on two cores, plus 1-2 minutes of clang build. A crash, leak,
# timeout or invariant failure fails the run; scripts/fuzz.sh prints the
# input gzip+base64 so that it can be recovered from the CI log, and keeps it
# in build-fuzz/fuzz-artifacts/. TW_FUZZ_SECONDS=0 skips this step in local
# runs; in CI (CI=true) it always runs.
fuzz_seconds=${TW_FUZZ_SECONDS:-60}
if [ "${CI:-}" = true ] && [ "$fuzz_seconds" = 0 ]; then
    echo "== CI=true: TW_FUZZ_SECONDS=0 ignored, fuzzing 60 s per target"
    fuzz_seconds=60
fi
if [ "$fuzz_seconds" = 0 ]; then
    echo "== fuzzing skipped (TW_FUZZ_SECONDS=0)"
else
    echo "== fuzzing (${fuzz_seconds}s per target, $jobs at a time, ASan+UBSan)"
    scripts/fuzz.sh -t "$fuzz_seconds" -j "$jobs"
fi
# ---- END fuzzing in CI -------------------------------------------------------
